// Lesson 11, preemption done by the runtime: a goroutine in a tight loop next to a heartbeat.
//
// One P (GOMAXPROCS=1), so the burner and the heartbeat share one scheduler. The burner is a
// loop with no function call in it. Before Go 1.14 the scheduler could take the P from a
// goroutine only at a safe point, in practice at a function call's stack check: such a loop kept
// the P until it ended (cooperative, like an event loop). Since Go 1.14 the runtime's monitor
// thread (sysmon) notices a goroutine that has run for over 10 ms (forcePreemptNS in
// runtime/proc.go) and sends its thread a signal (SIGURG); the handler stops the goroutine
// wherever it is and the scheduler runs the next one: asynchronous preemption. Run it with
// GODEBUG=asyncpreemptoff=1 to switch that off and see the old behaviour.
//
// usage: preempt_go TICK_MS BURN_MS TOTAL_MS
// Prints one JSON object: the worst lateness and every tick's (time since start, lateness) in ms.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

var sink uint64 // the loop's result goes here, so the compiler cannot drop the loop

// spin runs n iterations of arithmetic with no call inside: no safe point for cooperative
// preemption, only a signal can stop it.
func spin(n uint64) {
	x := sink
	for i := uint64(0); i < n; i++ {
		x = x*6364136223846793005 + i
	}
	sink = x
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: preempt_go TICK_MS BURN_MS TOTAL_MS")
		os.Exit(2)
	}
	var ms [3]int
	for i, arg := range os.Args[1:] {
		v, err := strconv.Atoi(arg)
		if err != nil || v <= 0 {
			fmt.Fprintln(os.Stderr, "preempt_go: TICK_MS, BURN_MS and TOTAL_MS must be positive integers")
			os.Exit(2)
		}
		ms[i] = v
	}
	tick, burnFor, total := time.Duration(ms[0])*time.Millisecond,
		time.Duration(ms[1])*time.Millisecond, time.Duration(ms[2])*time.Millisecond
	runtime.GOMAXPROCS(1)

	// Calibrate: how many iterations make BURN_MS on this CPU (the loop cannot look at a clock
	// without calling a function).
	const probe = 20_000_000
	t0 := time.Now()
	spin(probe)
	n := uint64(float64(probe) * float64(burnFor) / float64(time.Since(t0)))

	type sample struct{ t, late float64 }
	samples := make([]sample, 0, int(total/tick)+1)
	done := make(chan struct{})
	start := time.Now()
	go func() { // the heartbeat: wake every tick, note how late
		for k := 1; time.Duration(k)*tick <= total; k++ {
			due := start.Add(time.Duration(k) * tick)
			time.Sleep(time.Until(due))
			late := time.Since(due)
			samples = append(samples, sample{float64(due.Sub(start)) / 1e6, float64(late) / 1e6})
		}
		close(done)
	}()
	burned := make(chan time.Duration)
	go func() { // the burner: starts after five ticks, never calls anything while it burns
		time.Sleep(5 * tick)
		b0 := time.Now()
		spin(n)
		burned <- time.Since(b0)
	}()
	burnTook := <-burned
	<-done

	worst := 0.0
	series := make([][2]float64, len(samples))
	for i, s := range samples {
		series[i] = [2]float64{s.t, s.late}
		if s.late > worst {
			worst = s.late
		}
	}
	json.NewEncoder(os.Stdout).Encode(map[string]any{
		"go_version":   runtime.Version(),
		"asyncpreempt": !strings.Contains(os.Getenv("GODEBUG"), "asyncpreemptoff=1"),
		"worst_ms":     worst,
		"burn_ms":      float64(burnTook) / 1e6,
		"series":       series,
	})
}
