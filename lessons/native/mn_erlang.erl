%% Lesson 10, M:N scheduling in Erlang: what a BEAM process costs to create, to switch to, and to keep.
%%
%% The BEAM runs one scheduler thread per CPU core (erl +S sets how many), each with its own run
%% queue of ready Erlang processes. A process runs until it waits in `receive` or has used up its
%% reductions (a budget of function calls, about 4,000 per turn), then the scheduler picks the next
%% one from its queue, in user space; idle schedulers steal work and the load is rebalanced between
%% queues. A process is a heap and a stack of its own, a few hundred words to start, grown on
%% demand; spawn() allocates it, no system call, no thread. See the BEAM Book (Erik Stenman),
%% chapters "Scheduling" and "The Erlang Type System and Tags"/"Processes", and the Erlang
%% Efficiency Guide, "Processes" (the size of a process).
%%
%% Prints one line of JSON on stdout:
%%   create_ns    time to spawn one process that parks at once in receive, median of repeats
%%   switch_ns    one switch: half a round trip of a message ping-pong between two processes
%%   mem_bytes    private memory (USS, /proc/self/smaps_rollup) grown per parked process
%%   proc_bytes   erlang:memory(processes) grown per parked process (the VM's own count)
%%   os_threads   OS threads of the VM while COUNT processes are parked (/proc/self/status)
%%
%% usage: erl -noshell -pa DIR -s mn_erlang main COUNT ROUND_TRIPS REPEATS
%% (run with +S 1 so that the ping-pong switches on one scheduler)
-module(mn_erlang).
-export([main/1]).

main([Count, RoundTrips, Repeats]) ->
    N = list_to_integer(atom_to_list(Count)),
    R = list_to_integer(atom_to_list(RoundTrips)),
    K = list_to_integer(atom_to_list(Repeats)),
    %% Memory first, in a fresh VM: later rounds would reuse memory freed by earlier ones.
    erlang:garbage_collect(),
    UssBefore = proc_kib("/proc/self/smaps_rollup", ["Private_Clean:", "Private_Dirty:"]),
    ProcBefore = erlang:memory(processes),
    {_, Parked} = spawn_parked(N),
    ProcAfter = erlang:memory(processes),
    UssAfter = proc_kib("/proc/self/smaps_rollup", ["Private_Clean:", "Private_Dirty:"]),
    Threads = proc_kib("/proc/self/status", ["Threads:"]),
    release(Parked),
    Switches = [pingpong(R) || _ <- lists:seq(1, K)],
    Creates = [begin {Ns, Ps} = spawn_parked(N), release(Ps), Ns end || _ <- lists:seq(1, K)],
    io:format("{\"otp_release\": \"~s\", \"count\": ~b, \"create_ns\": ~.3f, \"switch_ns\": ~.3f, "
              "\"mem_bytes\": ~.3f, \"proc_bytes\": ~.3f, \"os_threads\": ~b, \"schedulers\": ~b}~n",
              [erlang:system_info(otp_release), N, median(Creates), median(Switches),
               (UssAfter - UssBefore) * 1024 / N, (ProcAfter - ProcBefore) / N, Threads,
               erlang:system_info(schedulers_online)]),
    halt(0).

%% Spawn N processes that park in receive; each says it is parked. Time until all have said so.
spawn_parked(N) ->
    Self = self(),
    T0 = erlang:monotonic_time(nanosecond),
    Pids = [spawn(fun() -> Self ! parked, receive go -> ok end end) || _ <- lists:seq(1, N)],
    wait_parked(N),
    T1 = erlang:monotonic_time(nanosecond),
    {(T1 - T0) / N, Pids}.

wait_parked(0) -> ok;
wait_parked(N) -> receive parked -> wait_parked(N - 1) end.

release(Pids) -> [P ! go || P <- Pids], ok.

%% Two processes send a message back and forth: each receive parks the receiver until the other's
%% send makes it runnable again. With one scheduler each hop is a switch in user space.
pingpong(R) ->
    Self = self(),
    Echo = spawn(fun Loop() -> receive {ping, V} -> Self ! {pong, V}, Loop(); stop -> ok end end),
    T0 = erlang:monotonic_time(nanosecond),
    ok = rounds(Echo, R),
    T1 = erlang:monotonic_time(nanosecond),
    Echo ! stop,
    (T1 - T0) / (2 * R).

rounds(_, 0) -> ok;
rounds(Echo, R) -> Echo ! {ping, R}, receive {pong, R} -> rounds(Echo, R - 1) end.

median(Xs) -> lists:nth(length(Xs) div 2 + 1, lists:sort(Xs)).

%% Sum the "Name: N kB" fields of a /proc file (procfs files read fine with read_file).
proc_kib(Path, Names) ->
    case file:read_file(Path) of
        {ok, Bin} ->
            lists:sum([list_to_integer(binary_to_list(V))
                       || Line <- binary:split(Bin, <<"\n">>, [global]),
                          [K, V | _] <- [binary:split(Line, [<<" ">>, <<"\t">>], [global, trim_all])],
                          lists:member(binary_to_list(K), Names)]);
        _ -> -1
    end.
