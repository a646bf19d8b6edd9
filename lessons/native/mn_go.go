// Lesson 10, M:N scheduling in Go: what a goroutine costs to create, to switch to, and to keep.
//
// Go runs many goroutines (G) on a few OS threads (M). A thread runs Go code only while it holds
// a P, a "processor" with its own run queue of ready goroutines; there are GOMAXPROCS Ps (one
// per CPU by default). `go f()` puts a new G on the current P's run queue: no system call, no
// thread. A goroutine that blocks on a channel is parked and its M picks the next G from the P's
// queue, in user space; an idle P steals half the queue of another (work stealing); goroutines
// blocked on sockets wait in the netpoller (epoll on Linux), not in a thread each. See the
// comment at the top of runtime/proc.go and Dmitry Vyukov's "Scalable Go Scheduler Design Doc".
//
// Prints one JSON object on stdout:
//
//	create_ns      time to start one goroutine that parks at once (go + its first run), median of repeats
//	switch_ns      one switch: half a round trip of a ping-pong over two unbuffered channels, GOMAXPROCS=1
//	mem_bytes      private memory (USS, /proc/self/smaps_rollup) grown per parked goroutine
//	stack_bytes    goroutine stack memory (runtime.MemStats.StackInuse) grown per parked goroutine
//	os_threads     OS threads of this process while COUNT goroutines are parked (/proc/self/status)
//
// usage: mn_go COUNT ROUND_TRIPS REPEATS
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// procKiB reads one "Name: N kB" field of a /proc file, summing the fields whose names are given.
func procKiB(path string, names ...string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return -1
	}
	defer f.Close()
	var total int64
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		fields := strings.Fields(scanner.Text())
		if len(fields) < 2 {
			continue
		}
		for _, name := range names {
			if fields[0] == name+":" {
				n, _ := strconv.ParseInt(fields[1], 10, 64)
				total += n
			}
		}
	}
	return total
}

func median(xs []float64) float64 {
	sort.Float64s(xs)
	return xs[len(xs)/2]
}

// create: start count goroutines that each park on one channel, time until all have run once.
func create(count int) (perGoroutineNs float64, release func()) {
	gate := make(chan struct{})
	var started sync.WaitGroup
	started.Add(count)
	t0 := time.Now()
	for i := 0; i < count; i++ {
		go func() {
			started.Done()
			<-gate // parked: the G sits in the channel's wait queue, no thread held
		}()
	}
	started.Wait()
	elapsed := time.Since(t0)
	return float64(elapsed.Nanoseconds()) / float64(count), func() { close(gate) }
}

// pingpong: two goroutines hand a value back and forth; each send wakes the other, each receive
// parks the sender's partner. With GOMAXPROCS=1 every hop is a switch on one P, in user space.
func pingpong(roundTrips int) float64 {
	ping, pong := make(chan int), make(chan int)
	go func() {
		for v := range ping {
			pong <- v
		}
		close(pong)
	}()
	t0 := time.Now()
	for i := 0; i < roundTrips; i++ {
		ping <- i
		<-pong
	}
	elapsed := time.Since(t0)
	close(ping)
	<-pong
	return float64(elapsed.Nanoseconds()) / float64(2*roundTrips)
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: mn_go COUNT ROUND_TRIPS REPEATS")
		os.Exit(2)
	}
	count, err1 := strconv.Atoi(os.Args[1])
	roundTrips, err2 := strconv.Atoi(os.Args[2])
	repeats, err3 := strconv.Atoi(os.Args[3])
	if err1 != nil || err2 != nil || err3 != nil || count < 1 || roundTrips < 1 || repeats < 1 {
		fmt.Fprintln(os.Stderr, "mn_go: COUNT, ROUND_TRIPS and REPEATS must be positive integers")
		os.Exit(2)
	}
	runtime.GOMAXPROCS(1) // one P: the switch is the scheduler's, not a wake-up of another CPU

	// Memory first, in a fresh runtime: later rounds would reuse the stacks freed by earlier ones.
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ussBefore := procKiB("/proc/self/smaps_rollup", "Private_Clean", "Private_Dirty")
	_, release := create(count)
	runtime.ReadMemStats(&after)
	ussAfter := procKiB("/proc/self/smaps_rollup", "Private_Clean", "Private_Dirty")
	threads := procKiB("/proc/self/status", "Threads")
	release()

	var switches []float64
	for r := 0; r < repeats; r++ {
		switches = append(switches, pingpong(roundTrips))
	}

	var creates []float64
	for r := 0; r < repeats; r++ {
		ns, release := create(count)
		creates = append(creates, ns)
		release()
	}

	out := map[string]any{
		"go_version":  runtime.Version(),
		"count":       count,
		"create_ns":   median(creates),
		"switch_ns":   median(switches),
		"mem_bytes":   float64(ussAfter-ussBefore) * 1024 / float64(count),
		"stack_bytes": float64(after.StackInuse-before.StackInuse) / float64(count),
		"os_threads":  threads,
		"gomaxprocs":  runtime.GOMAXPROCS(0),
		"num_cpu":     runtime.NumCPU(),
	}
	json.NewEncoder(os.Stdout).Encode(out)
}
