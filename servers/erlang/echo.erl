%% erlang: a BEAM process per connection under gen_tcp, active-once (lesson 10, fibers; lesson 11
%% for its preemption by reductions).
%%
%% The code reads like the `threads` server: an acceptor loops on gen_tcp:accept and spawns a
%% process for each connection, which loops receive -> send. A BEAM process is not an OS thread:
%% it is a few hundred bytes of heap and stack owned by the runtime. The runtime runs one
%% scheduler thread per core; each has a run queue of processes, takes the next one, lets it run
%% for about 4,000 reductions (function calls, roughly), then puts it back and runs the next,
%% whatever it was doing: preemptive M:N scheduling, done by the runtime, not the OS. Idle
%% schedulers steal work from busy ones. So a process burning CPU (--work-us) cannot starve the
%% others.
%%
%% What a connection does while it waits: its process sits in `receive`, off every run queue,
%% costing no CPU. The socket belongs to the runtime's I/O poller (epoll on Linux); when epoll
%% says it is readable, the runtime reads the bytes and sends them to the owning process as a
%% message, {tcp, Socket, Data}, which makes the process runnable again.
%%
%% Active-once, and why: in active mode the runtime sends the process every chunk as a message as
%% fast as the client sends them, and a process that cannot keep up (its client does not read
%% the echo) would collect an unbounded mailbox. In passive mode (recv) it asks for each chunk.
%% {active, once} sits between: one message, then the socket goes passive until the process asks
%% again (inet:setopts). The process asks only after gen_tcp:send returned, and send blocks
%% (the port is "busy") while more than its high watermark (8 KiB) waits in the socket's output
%% queue. So a client that never reads holds at most one chunk and a watermark here: flow control.
%%
%% Signals: os:set_signal(sigterm, handle) makes SIGTERM an event of erl_signal_server; this
%% module's handler replaces the default one (init:stop(), an orderly shutdown of every
%% application that takes about a second) with erlang:halt(0). SIGINT is the runtime's break
%% handler: it reads its menu choice from stdin, which servers/native.py points at /dev/null, so
%% the runtime halts with status 0 at once (and prints its BREAK menu on stdout first).
%%
%% Built at first use by servers/build.py (erlc), run by servers/native.py as
%% `erl -noshell -s echo main -extra OPTIONS`.  Run it:  make serve SERVER=erlang
%% Watch it:  the process count and run queues are what observer shows; ls /proc/PID/task shows
%% one OS thread per scheduler (plus I/O and async threads), however many clients.
-module(echo).
-behaviour(gen_event).
-export([main/0]).
-export([init/1, handle_event/2, handle_call/2, handle_info/2, terminate/2, code_change/3]).

-define(NAME, "erlang").
-define(CHUNK_BYTES, 65536). % the most one {tcp, S, Data} message carries
-define(ACCEPT_BACKOFF_MS, 100). % out of fds: wait this long before the next accept
-define(DESCHEDULED_NS, 20000). % a gap this long in the burn loop: the process was not running

main() ->
    {Host, Port, Backlog, WorkUs} = parse_args(init:get_plain_arguments()),
    os:set_signal(sigterm, handle),
    ok = gen_event:swap_handler(erl_signal_server, {erl_signal_handler, []}, {?MODULE, []}),
    Listener = listen(Host, Port, Backlog),
    {ok, {Addr, BoundPort}} = inet:sockname(Listener),
    Shown = case tuple_size(Addr) of 8 -> "[" ++ inet:ntoa(Addr) ++ "]"; 4 -> inet:ntoa(Addr) end,
    io:format("serving ~s on ~s:~b (pid ~s, schedulers ~b)~n",
              [?NAME, Shown, BoundPort, os:getpid(), erlang:system_info(schedulers_online)]),
    accept_loop(Listener, WorkUs, 0).

%% The acceptor: one process, blocked in accept (parked, like any process waiting for a message).
accept_loop(Listener, WorkUs, LastLogMs) ->
    case gen_tcp:accept(Listener) of
        {ok, Socket} ->
            Pid = spawn(fun() -> receive go -> serve_connection(Socket, WorkUs) end end),
            % the socket's messages go to its owner: hand it over before the process reads
            ok = gen_tcp:controlling_process(Socket, Pid),
            Pid ! go,
            accept_loop(Listener, WorkUs, LastLogMs);
        {error, Why} when Why =:= emfile; Why =:= enfile; Why =:= system_limit ->
            % Out of descriptors. OTP 25's inet driver mostly handles this itself: when accept()
            % fails with EMFILE it stops watching the listener and retries on a timer (strace
            % shows about ten tries a second), while gen_tcp:accept keeps waiting. Should the
            % error reach us: the client stays in the listen queue, and accepting again at once
            % would fail again at once, a spin. Wait, then retry.
            Now = erlang:monotonic_time(millisecond),
            Logged = case Now - LastLogMs > 5000 of
                         true -> log("accept: ~p; not accepting for ~b ms", [Why, ?ACCEPT_BACKOFF_MS]), Now;
                         false -> LastLogMs
                     end,
            % (a bare `receive after`: the timer module might not be loaded yet, and loading a
            % module needs a free descriptor to open its .beam file)
            receive after ?ACCEPT_BACKOFF_MS -> ok end,
            accept_loop(Listener, WorkUs, Logged);
        {error, closed} ->
            ok;
        {error, _} -> % econnaborted & co: that one client only
            accept_loop(Listener, WorkUs, LastLogMs)
    end.

%% One connection: ask for one chunk, echo it, ask again. Between two chunks the process waits in
%% `receive`, descheduled.
serve_connection(Socket, WorkUs) ->
    case inet:setopts(Socket, [{active, once}]) of
        ok ->
            receive
                {tcp, Socket, Data} ->
                    burn_cpu(WorkUs),
                    case gen_tcp:send(Socket, Data) of % blocks while the output queue is full
                        ok -> serve_connection(Socket, WorkUs);
                        {error, _} -> gen_tcp:close(Socket) % reset: this client only
                    end;
                {tcp_closed, Socket} ->
                    % FIN from the client (exit_on_close is off, so we may still write): every
                    % chunk was handed to send; close flushes the queue, then sends our FIN.
                    gen_tcp:close(Socket);
                {tcp_error, Socket, _} ->
                    gen_tcp:close(Socket)
            end;
        {error, _} ->
            gen_tcp:close(Socket)
    end.

listen(Host, Port, Backlog) ->
    Ip = case inet:parse_address(Host) of
             {ok, Parsed} -> Parsed;
             {error, _} -> fail(2, "cannot listen on '~s': not an IP address; give --host an IP "
                                   "address such as 127.0.0.1", [Host])
         end,
    Family = case tuple_size(Ip) of 8 -> [inet6]; 4 -> [] end,
    Options = Family ++ [binary, {ip, Ip}, {active, false}, {reuseaddr, true},
                         {backlog, Backlog}, {nodelay, true}, {exit_on_close, false},
                         {buffer, ?CHUNK_BYTES}],
    case gen_tcp:listen(Port, Options) of
        {ok, Listener} ->
            Listener;
        {error, eaddrinuse} ->
            fail(1, "cannot listen on ~s:~b: address already in use; pick another --port, or "
                    "--port 0 for a free one", [Host, Port]);
        {error, Why} ->
            fail(1, "cannot listen on ~s:~b: ~p; check --host and --port", [Host, Port, Why])
    end.

%% --work-us: keep this process busy for that many microseconds of its own running time
%% (lesson 11). BEAM has no per-process CPU clock, and statistics(runtime) counts the whole VM in
%% milliseconds. So the loop reads the monotonic clock and counts only short steps: a step longer
%% than DESCHEDULED_NS means the process was not running meanwhile (its scheduler preempted it
%% after its reductions, or the OS preempted the scheduler thread), and is not counted. What is
%% counted is the time the process ran, which is what a thread's CPU clock counts for a thread.
burn_cpu(WorkUs) when WorkUs =< 0 ->
    ok;
burn_cpu(WorkUs) ->
    burn(WorkUs * 1000, erlang:monotonic_time(nanosecond)).

burn(LeftNs, _) when LeftNs =< 0 ->
    ok;
burn(LeftNs, Before) ->
    Now = erlang:monotonic_time(nanosecond),
    Step = Now - Before,
    burn(case Step < ?DESCHEDULED_NS of true -> LeftNs - Step; false -> LeftNs end, Now).

%% -- SIGTERM: the erl_signal_server handler ---------------------------------------------------

init(State) -> {ok, State}.
handle_event(sigterm, State) -> % erl_signal_server notifies the bare atom
    log("SIGTERM: shut down", []),
    erlang:halt(0), % the kernel closes every socket
    {ok, State};
handle_event(_, State) -> {ok, State}.
handle_call(_, State) -> {ok, ok, State}.
handle_info(_, State) -> {ok, State}.
terminate(_, _) -> ok.
code_change(_, State, _) -> {ok, State}.

%% -- options, logging: servers/common.py's, in Erlang -----------------------------------------

parse_args(Args) -> parse_args(Args, {"127.0.0.1", 0, 4096, 0}).

parse_args([], Opts) ->
    Opts;
parse_args([Help | _], _) when Help =:= "-h"; Help =:= "--help" ->
    io:format("usage: python -m servers serve erlang [--host HOST] [--port PORT] [--backlog N] "
              "[--work-us N]~n"
              "  --host HOST   address to listen on (default: 127.0.0.1, loopback only)~n"
              "  --port PORT   TCP port; 0 picks a free one (default: 0)~n"
              "  --backlog N   listen queue length, capped by net.core.somaxconn (default: 4096)~n"
              "  --work-us N   burn N microseconds per chunk received, before echoing it (default: 0)~n"
              "Prints 'serving erlang on HOST:PORT (pid N, schedulers S)' once it accepts "
              "connections; SIGINT or SIGTERM stops it (exit 0).~n"),
    erlang:halt(0);
parse_args([Arg | Rest], Opts) ->
    case string:split(Arg, "=") of
        ["--" ++ _ = Option, Value] -> option(Option, Value, Rest, Opts);
        _ when Rest =/= [] -> option(Arg, hd(Rest), tl(Rest), Opts);
        _ -> option(Arg, none, Rest, Opts)
    end.

option(Option, _, _, _) when Option =/= "--host", Option =/= "--port", Option =/= "--backlog",
                             Option =/= "--work-us" ->
    fail(2, "error: unrecognized argument ~s: the options are --host, --port, --backlog, "
            "--work-us (see --help)", [Option]);
option(Option, none, _, _) ->
    fail(2, "error: argument ~s: expected one value", [Option]);
option("--host", Host, Rest, {_, Port, Backlog, Work}) ->
    parse_args(Rest, {Host, Port, Backlog, Work});
option("--port", Text, Rest, {Host, _, Backlog, Work}) ->
    Port = number("--port", Text, 0, 65535, "give a number from 0 to 65535 (0 picks a free port)"),
    parse_args(Rest, {Host, Port, Backlog, Work});
option("--backlog", Text, Rest, {Host, Port, _, Work}) ->
    parse_args(Rest, {Host, Port, number("--backlog", Text, 1, 1 bsl 31 - 1, "give 1 or more"), Work});
option("--work-us", Text, Rest, {Host, Port, Backlog, _}) ->
    parse_args(Rest, {Host, Port, Backlog, number("--work-us", Text, 0, 1 bsl 40, "give 0 or more")}).

number(Option, Text, Min, Max, Fix) ->
    case string:to_integer(Text) of
        {N, []} when N >= Min, N =< Max -> N;
        {N, []} -> fail(2, "error: argument ~s: ~b out of range: ~s", [Option, N, Fix]);
        _ -> fail(2, "error: argument ~s: '~s' is not a whole number: ~s", [Option, Text, Fix])
    end.

fail(Status, Format, Args) ->
    io:format(standard_error, ?NAME ": " ++ Format ++ "~n", Args),
    erlang:halt(Status).

log(Format, Args) ->
    io:format(standard_error, "[~s ~s] " ++ Format ++ "~n", [?NAME, os:getpid() | Args]).
