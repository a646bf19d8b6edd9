// go: a goroutine per connection, blocking Read and Write, on Go's M:N scheduler (lesson 10,
// fibers; lesson 11 for its preemption).
//
// The code is the `threads` server's: accept, start a goroutine, that goroutine loops Read ->
// Write until EOF. What differs is underneath. A goroutine is a fiber with a growable stack
// (starting at 8 KiB), not an OS thread. Go's scheduler runs the goroutines (G) on a few OS
// threads (M), each holding one of GOMAXPROCS processors (P, --procs); an idle P steals half the
// run queue of a busy one (work stealing).
//
// What a connection does while it waits: its goroutine calls conn.Read; the socket is
// non-blocking underneath, read() says EAGAIN, and the runtime parks the goroutine on its
// netpoller (one epoll instance for the whole process) and runs another goroutine on the same
// thread. When epoll reports the socket readable the goroutine is made runnable again. So the code
// looks blocking, and the process runs like the epoll server: a few threads, one epoll, and a
// parked goroutine (its stack and a 16 KiB buffer) per waiting connection.
//
// Preemption: since Go 1.14 a goroutine that runs longer than 10 ms without a call that yields is
// interrupted by a signal (SIGURG) and descheduled (asynchronous preemption), so --work-us on one
// connection does not starve the others even with --procs 1. GODEBUG=asyncpreemptoff=1 turns that
// off and shows the old, cooperative behaviour (lesson 11).
//
// Backpressure comes for free, as for threads: conn.Write returns once the kernel took all the
// bytes, so a client that never reads blocks its own goroutine in Write, which then stops
// reading; the server holds at most one buffer for it.
//
// Standard library only, one file; built at first use by servers/build.py (`go build`), run by
// servers/native.py.  Run it:  make serve SERVER=go ARGS="--procs 1"
// Watch it:  ls /proc/PID/task (the threads: about GOMAXPROCS plus a few, however many clients);
// GODEBUG=schedtrace=1000 prints the scheduler's run queues every second.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

const (
	name          = "go"
	chunkBytes    = 16 * 1024              // one Read asks for at most this: every connection holds one
	acceptBackoff = 100 * time.Millisecond // out of fds: wait this long before the next Accept
)

var workUs int64 // --work-us, read by every connection's goroutine

func main() {
	opts := parseArgs()
	workUs = opts.workUs
	runtime.GOMAXPROCS(opts.procs)
	// Go (1.19+) raises the soft RLIMIT_NOFILE to the hard limit itself at start-up.

	listener := listen(opts.host, opts.port, opts.backlog)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-stop
		logf("%s: shut down", map[os.Signal]string{syscall.SIGINT: "SIGINT", syscall.SIGTERM: "SIGTERM"}[sig])
		listener.Close()
		os.Exit(0) // the kernel closes every connection; no goroutine has anything to flush
	}()
	fmt.Printf("serving %s on %s (pid %d, GOMAXPROCS %d)\n", name, listener.Addr(), os.Getpid(),
		runtime.GOMAXPROCS(0))
	os.Stdout.Sync()

	var lastLog time.Time
	for {
		conn, err := listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				select {} // shutting down: the signal goroutine exits the process
			}
			// EMFILE & co: the client stays in the listen queue; accepting again at once would
			// fail again at once, a spin. Wait, then retry (what net/http does, too).
			if time.Since(lastLog) > 5*time.Second {
				logf("accept: %v; not accepting for %v", err, acceptBackoff)
				lastLog = time.Now()
			}
			time.Sleep(acceptBackoff)
			continue
		}
		go serveConnection(conn) // about 2 KiB of bookkeeping and an 8 KiB stack to start
	}
}

// serveConnection: the whole per-connection logic. Read parks the goroutine until bytes arrive,
// Write until the kernel took them all. (The net package sets TCP_NODELAY on every connection.)
func serveConnection(conn net.Conn) {
	defer conn.Close()
	buf := make([]byte, chunkBytes)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			burnCPU(workUs)
			if _, werr := conn.Write(buf[:n]); werr != nil {
				return // reset or broken pipe: this client only
			}
		}
		if err != nil {
			// io.EOF: the client sent FIN, and everything it sent was echoed (Write returned),
			// so close (our FIN). Anything else is a reset: close too.
			return
		}
	}
}

// burnCPU spins for workUs microseconds of this thread's CPU time (lesson 11). Go has no thread
// CPU clock in its standard library, so it asks the kernel directly: clock_gettime with
// CLOCK_THREAD_CPUTIME_ID (3) as a raw system call. A goroutine may move to another thread at any
// preemption, and that thread's clock is a different one: LockOSThread wires the goroutine to
// its thread for the burn, so the clock it reads counts exactly the CPU it used.
func burnCPU(us int64) {
	if us <= 0 {
		return
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	deadline := threadCPUNs() + us*1000
	for threadCPUNs() < deadline {
	}
}

func threadCPUNs() int64 {
	const clockThreadCPUTimeID = 3
	var ts syscall.Timespec
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0)
	return ts.Nano()
}

// listen: socket, SO_REUSEADDR, bind, listen(backlog) by hand, because net.Listen always asks
// for the kernel's maximum backlog (net.core.somaxconn) and --backlog must be honoured; then
// net.FileListener hands the socket to the runtime's netpoller like any other.
func listen(host string, port, backlog int) net.Listener {
	ip := net.ParseIP(host)
	if ip == nil {
		fail(2, "cannot listen on %q: not an IP address; give --host an IP address such as 127.0.0.1", host)
	}
	family, sa := syscall.AF_INET, syscall.Sockaddr(nil)
	if ip4 := ip.To4(); ip4 != nil {
		a := &syscall.SockaddrInet4{Port: port}
		copy(a.Addr[:], ip4)
		sa = a
	} else {
		a := &syscall.SockaddrInet6{Port: port}
		copy(a.Addr[:], ip.To16())
		family, sa = syscall.AF_INET6, a
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err == nil {
		syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
		if err = syscall.Bind(fd, sa); err == nil {
			err = syscall.Listen(fd, backlog)
		}
	}
	if err != nil {
		hint := "check --host and --port"
		if errors.Is(err, syscall.EADDRINUSE) {
			hint = "pick another --port, or --port 0 for a free one"
		}
		fail(1, "cannot listen on %s:%d: %v; %s", host, port, err, hint)
	}
	file := os.NewFile(uintptr(fd), "listener")
	listener, err := net.FileListener(file) // dups the fd and makes it non-blocking
	if err != nil {
		fail(1, "cannot listen on %s:%d: %v", host, port, err)
	}
	file.Close()
	return listener
}

// -- options, logging: servers/common.py's, in Go ------------------------------------------------

type options struct {
	host                 string
	port, backlog, procs int
	workUs               int64
}

func parseArgs() options {
	flags := flag.NewFlagSet("python -m servers serve go", flag.ContinueOnError)
	host := flags.String("host", "127.0.0.1", "address to listen on")
	port := flags.String("port", "0", "TCP port; 0 picks a free one")
	// 4096, as every server here (Linux's SOMAXCONN since 5.4; Go's syscall.SOMAXCONN is still
	// 128, and a burst of 5,000 connects overflowed a queue that short 1,800-7,000 times)
	backlog := flags.String("backlog", "4096", "listen queue length, capped by net.core.somaxconn")
	work := flags.String("work-us", "0", "burn N microseconds of CPU per chunk received, before echoing it")
	procs := flags.String("procs", strconv.Itoa(runtime.NumCPU()), "GOMAXPROCS: threads running Go code at once, by default the CPUs this process may use")
	flags.SetOutput(io.Discard) // a bad option is one line, as every server says it; --help prints below
	flags.Usage = func() {}
	if err := flags.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			fmt.Println("usage: python -m servers serve go [--host HOST] [--port PORT] [--backlog N] [--work-us N] [--procs N]")
			flags.VisitAll(func(f *flag.Flag) { fmt.Printf("  --%-9s %s (default %s)\n", f.Name, f.Usage, f.DefValue) })
			fmt.Println("Prints 'serving go on HOST:PORT (pid N, GOMAXPROCS P)' once it accepts connections; SIGINT or SIGTERM stops it (exit 0).")
			os.Exit(0)
		}
		why := err.Error()
		// Go's flag package spells options with one dash; the contract (and --help) spells two
		for prefix, say := range map[string]string{"flag provided but not defined: -": "unrecognized argument --",
			"flag needs an argument: -": "expected a value after --"} {
			if strings.HasPrefix(why, prefix) {
				why = say + strings.TrimPrefix(strings.TrimPrefix(why, prefix), "-")
			}
		}
		fail(2, "error: %s: the options are --host, --port, --backlog, --work-us, --procs (see --help)", why)
	}
	if flags.NArg() > 0 {
		fail(2, "error: unrecognized argument %q (see --help)", flags.Arg(0))
	}
	return options{
		host:    *host,
		port:    number("--port", *port, 0, 65535, "give a number from 0 to 65535 (0 picks a free port)"),
		backlog: number("--backlog", *backlog, 1, 1<<31-1, "give 1 or more"),
		procs:   number("--procs", *procs, 1, 1<<20, "give 1 or more"),
		workUs:  int64(number("--work-us", *work, 0, 1<<40, "give 0 or more")),
	}
}

func number(option, text string, min, max int, fix string) int {
	value, err := strconv.Atoi(text)
	if err != nil {
		fail(2, "error: argument %s: '%s' is not a whole number: %s", option, text, fix)
	}
	if value < min || value > max {
		fail(2, "error: argument %s: %d out of range: %s", option, value, fix)
	}
	return value
}

func fail(code int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, name+": "+format+"\n", args...)
	os.Exit(code)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%s %d] %s\n", name, os.Getpid(), fmt.Sprintf(format, args...))
}
