// Lesson 10, M:N scheduling in Java: what a virtual thread costs to create, to switch to, and to keep.
//
// A virtual thread (JEP 444, Java 21) is a thread the JDK schedules, not the kernel: the JDK runs
// virtual threads on a few OS threads, its carriers (a ForkJoinPool, one carrier per CPU by default;
// this program is started with -Djdk.virtualThreadScheduler.parallelism=1, like GOMAXPROCS=1 and
// erl +S 1). A virtual thread that waits (park, a lock, a socket read) is unmounted: its frames are
// copied from the carrier's stack into a stack chunk on the Java heap, and the carrier runs the
// next virtual thread in its queue. Switching is a copy of the few frames that changed, in user
// space; keeping one costs a Thread object and its stack chunk, both ordinary heap objects.
//
// Prints one JSON object on stdout:
//
//	create_ns      time to start one virtual thread that parks at once, median of repeats
//	switch_ns      one switch: half a round trip of a ping-pong between two virtual threads, each
//	               unparking the other and parking itself (LockSupport, what every Java lock and
//	               queue waits in), one carrier
//	mem_bytes      private memory (USS, /proc/self/smaps_rollup) grown per parked virtual thread, the
//	               first batch (later ones reuse the heap it grew)
//	heap_bytes     Java heap in use (after a full GC) grown per parked virtual thread
//	os_threads     OS threads of this process while COUNT virtual threads are parked
//
// Compiled by a JDK 17+ javac (--release 17, servers/build.py), run on Java 21+: Thread.ofVirtual()
// is named by reflection, as servers/java/Echo.java does.
// usage: java -Djdk.virtualThreadScheduler.parallelism=1 -cp DIR mn_java COUNT ROUND_TRIPS REPEATS

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.locks.LockSupport;

final class mn_java {
    static ThreadFactory virtualThreads() throws ReflectiveOperationException {
        Object builder = Thread.class.getMethod("ofVirtual").invoke(null);
        return (ThreadFactory) Class.forName("java.lang.Thread$Builder").getMethod("factory").invoke(builder);
    }

    // The sum of the named "Name: N kB" fields of a /proc file, in KiB (-1 if unreadable).
    static long procKiB(String path, String... names) {
        try {
            long total = 0;
            for (String line : Files.readAllLines(Path.of(path))) {
                String[] fields = line.trim().split("\\s+");
                for (String name : names)
                    if (fields.length >= 2 && fields[0].equals(name + ":")) total += Long.parseLong(fields[1]);
            }
            return total;
        } catch (IOException | NumberFormatException e) {
            return -1;
        }
    }

    static double median(double[] xs) {
        double[] sorted = xs.clone();
        Arrays.sort(sorted);
        return sorted[sorted.length / 2];
    }

    static long heapUsed() {
        Runtime rt = Runtime.getRuntime();
        for (int i = 0; i < 3; i++) System.gc();  // a full collection: what is left is live
        return rt.totalMemory() - rt.freeMemory();
    }

    // Start count virtual threads that each say they run and then park on `gate`; the time per
    // thread until all of them have run once.
    static double create(ThreadFactory factory, int count, CountDownLatch gate, List<Thread> out)
            throws InterruptedException {
        CountDownLatch started = new CountDownLatch(count);
        long t0 = System.nanoTime();
        for (int i = 0; i < count; i++) {
            Thread t = factory.newThread(() -> {
                started.countDown();
                try {
                    gate.await();  // parked: unmounted, its frames in a stack chunk on the heap
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            });
            t.start();
            out.add(t);
        }
        started.await();
        return (System.nanoTime() - t0) / (double) count;
    }

    static volatile int turn;  // 0: ping's turn to run, 1: pong's

    // A ping-pong of roundTrips round trips between two virtual threads; ns per switch.
    static double pingpong(ThreadFactory factory, int roundTrips) throws InterruptedException {
        turn = 0;
        long[] elapsed = new long[1];
        Thread[] pair = new Thread[2];
        pair[1] = factory.newThread(() -> {  // pong: wait for its turn, hand the turn back
            for (int i = 0; i < roundTrips; i++) {
                while (turn != 1) LockSupport.park();
                turn = 0;
                LockSupport.unpark(pair[0]);
            }
        });
        pair[0] = factory.newThread(() -> {  // ping: hand the turn over, wait for it back
            long t0 = System.nanoTime();
            for (int i = 0; i < roundTrips; i++) {
                turn = 1;
                LockSupport.unpark(pair[1]);
                while (turn != 0) LockSupport.park();
            }
            elapsed[0] = System.nanoTime() - t0;
        });
        pair[1].start();
        pair[0].start();
        pair[0].join();
        pair[1].join();
        return elapsed[0] / (2.0 * roundTrips);
    }

    public static void main(String[] argv) throws Exception {
        int count, roundTrips, repeats;
        try {
            count = Integer.parseInt(argv[0]);
            roundTrips = Integer.parseInt(argv[1]);
            repeats = Integer.parseInt(argv[2]);
            if (argv.length != 3 || count < 1 || roundTrips < 1 || repeats < 1) throw new NumberFormatException();
        } catch (ArrayIndexOutOfBoundsException | NumberFormatException e) {
            System.err.println("usage: mn_java COUNT ROUND_TRIPS REPEATS (each a positive integer)");
            System.exit(2);
            return;
        }
        ThreadFactory factory;
        try {
            factory = virtualThreads();
        } catch (ReflectiveOperationException e) {
            System.err.println("this Java (" + Runtime.version() + ") has no virtual threads: run it on Java 21+");
            System.exit(3);
            return;
        }

        pingpong(factory, roundTrips);  // once untimed: the JIT compiles the loop first
        double[] switches = new double[repeats];
        for (int r = 0; r < repeats; r++) switches[r] = pingpong(factory, roundTrips);

        // Batch 0 is measured for memory, on a heap no earlier batch has touched; batches 1..repeats
        // are timed (their median is create_ns).
        double[] creates = new double[repeats];
        long uss = 0, heap = 0, threads = 0;
        for (int r = 0; r <= repeats; r++) {
            CountDownLatch gate = new CountDownLatch(1);
            List<Thread> parked = new ArrayList<>(count);
            long heap0 = heapUsed();  // every batch starts from a collected heap
            long uss0 = procKiB("/proc/self/smaps_rollup", "Private_Clean", "Private_Dirty");
            double ns = create(factory, count, gate, parked);
            if (r == 0) {  // all parked: what they hold
                heap = heapUsed() - heap0;
                uss = procKiB("/proc/self/smaps_rollup", "Private_Clean", "Private_Dirty") - uss0;
                threads = procKiB("/proc/self/status", "Threads");
            } else {
                creates[r - 1] = ns;
            }
            gate.countDown();
            for (Thread t : parked) t.join();
        }
        System.out.printf("{\"java\": \"%s\", \"count\": %d, \"carriers\": %s, \"create_ns\": %.1f, "
                + "\"switch_ns\": %.1f, \"mem_bytes\": %.1f, \"heap_bytes\": %.1f, \"os_threads\": %d}%n",
                Runtime.version(), count, System.getProperty("jdk.virtualThreadScheduler.parallelism", "null"),
                median(creates), median(switches), uss * 1024.0 / count, heap / (double) count, threads);
    }
}
