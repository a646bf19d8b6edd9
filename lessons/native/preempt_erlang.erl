%% Lesson 11, preemption done by the runtime: an Erlang process in a tight loop next to a heartbeat.
%%
%% One scheduler (erl +S 1), so the burner and the heartbeat share one run queue. The burner is a
%% tail-recursive loop that never waits. Every function call costs the process one reduction; when
%% it has used its budget (CONTEXT_REDS, 4,000 in erts/emulator/beam/erl_vm.h) the scheduler puts it
%% back at the end of the run queue and runs the next process. The check is compiled into every
%% call, so no Erlang code can keep a scheduler: preemption without signals and without the kernel.
%% (Native code called through a NIF can: it counts no reductions, which is why long NIFs must run
%% on a dirty scheduler.)
%%
%% usage: erl +S 1 -noshell -pa DIR -s preempt_erlang main TICK_MS BURN_MS TOTAL_MS
%% Prints one line of JSON: the worst lateness and every tick's (time since start, lateness) in ms.
-module(preempt_erlang).
-export([main/1]).

main([TickA, BurnA, TotalA]) ->
    [Tick, Burn, Total] = [list_to_integer(atom_to_list(A)) || A <- [TickA, BurnA, TotalA]],
    %% Calibrate: how many iterations of the loop make BURN_MS here.
    Probe = 10000000,
    T0 = now_us(),
    spin(Probe),
    N = round(Probe * Burn * 1000 / max(1, now_us() - T0)),
    Self = self(),
    Start = now_us(),
    spawn(fun() -> heartbeat(Self, Start, Tick, 1, Total div Tick, []) end),
    spawn(fun() ->
                  receive after 5 * Tick -> ok end,
                  B0 = now_us(),
                  spin(N),
                  Self ! {burned, now_us() - B0}
          end),
    BurnUs = receive {burned, Us} -> Us end,
    Series = receive {ticks, S} -> S end,
    Worst = lists:max([L || {_, L} <- Series]),
    io:format("{\"otp_release\": \"~s\", \"worst_ms\": ~.4f, \"burn_ms\": ~.3f, \"series\": [~s]}~n",
              [erlang:system_info(otp_release), Worst, BurnUs / 1000,
               lists:join(", ", [io_lib:format("[~.3f, ~.4f]", [T, L]) || {T, L} <- Series])]),
    halt(0).

%% Wake at Start + K * Tick (an absolute timer, in ms of the monotonic clock), note how late.
heartbeat(Parent, _Start, _Tick, K, Ticks, Acc) when K > Ticks ->
    Parent ! {ticks, lists:reverse(Acc)};
heartbeat(Parent, Start, Tick, K, Ticks, Acc) ->
    DueUs = Start + K * Tick * 1000,
    erlang:start_timer(ceil_div(DueUs, 1000), self(), tick,
                       [{abs, true}]),
    receive {timeout, _, tick} -> ok end,
    LateUs = now_us() - DueUs,
    heartbeat(Parent, Start, Tick, K + 1, Ticks, [{(DueUs - Start) / 1000, LateUs / 1000} | Acc]).

%% A loop that never waits: one reduction per call, so the scheduler can swap it out.
spin(0) -> ok;
spin(N) -> spin(N - 1).

now_us() -> erlang:monotonic_time(microsecond).

ceil_div(A, B) -> (A + B - 1) div B.
