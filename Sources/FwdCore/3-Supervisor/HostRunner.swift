import Foundation

/// Settings the supervisor runs with; tests shorten the intervals.
package struct SupervisorOptions: Sendable {
    /// Seconds between probes of a tunnel that is up.
    package var probeInterval: Double = 2
    /// Consecutive probes without an answer (connection open, nothing comes back) before the master is
    /// restarted: the transport is stalled even though ssh has not noticed yet.
    package var stalledProbeLimit = 3
    /// How often a `-R` forward refused by the server ("remote port forwarding failed") is retried before the
    /// tunnel is marked failed: the server may still hold an old session's listener until its ClientAlive fires.
    package var remoteListenerRetries = 6
    package var backoff = Backoff()
    /// Seconds a supervisor started on demand by `fwd up` stays once nothing is wanted, then exits.
    package var idleExit: Double = 30
    /// The fwd executable, run by ssh as `SSH_ASKPASS` so a login that needs a person asks at the terminal of the
    /// `fwd up` waiting for it. nil: masters run with BatchMode (logins by agent or unencrypted key only).
    package var askpass: String?
    /// The fwd version, for the metrics' `fwd_build_info`.
    package var version = "unknown"
    /// Seconds between two desktop notifications of one tunnel; what happens in between is summarized after.
    package var notifyInterval: Double = 30

    package init() {}

    package static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) -> SupervisorOptions {
        var o = SupervisorOptions()
        if let s = env["FWD_PROBE_INTERVAL"], let v = Double(s), v > 0 { o.probeInterval = v }
        if let s = env["FWD_IDLE_EXIT"], let v = Double(s), v > 0 { o.idleExit = v }
        if let s = env["FWD_NOTIFY_INTERVAL"], let v = Double(s), v > 0 { o.notifyInterval = v }
        return o
    }
}

/// Settles once: what a request to a runner waits on. Made before the request is queued, so requests keep
/// the order in which they were handed over, and their callers may wait elsewhere.
package final class Settle: Sendable {
    private let state = Locked<(done: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    package init() {}

    package func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                if state.done { return true }
                state.waiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    func resume() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard !state.done else { return [] }
            state.done = true
            defer { state.waiters = [] }
            return state.waiters
        }
        waiters.forEach { $0.resume() }
    }
}

/// Runs one SSH host's `HostMachine`: performs the actions it returns and feeds their results back as events.
/// The event loop never awaits I/O. Every action that does I/O (spawn and stop the master, mux requests,
/// probes, path checks, `ssh -G`) runs as a tracked child task that reports an event; timers live in a keyed
/// table. Tasks and timers of an older generation are cancelled when the machine moves on, and everything is
/// cancelled when the loop ends, so a stopped or hung master holds up nothing but its own results.
actor HostRunner {
    private enum Input: Sendable {
        case event(HostMachine.Event)
        case update([Tunnel], retry: Set<String>, done: Settle)
        case check(Set<String>?, done: Settle)
        case stop(done: Settle)
        /// What `ssh -G` says for the host (from the supervisor after a config change, or asked here).
        case resolved(ResolvedHost)
        case pathCheck(PathTrigger, done: CheckedContinuation<String, Never>?)
        /// The live master's network path, and what a transport check took on it right after it connected.
        case pathLearned(generation: Int, MasterPath?, baseline: Double?)
        case taskEnded(Int)
    }

    enum Launch: Sendable {
        case master(ControlMaster, AskpassRelay?)
        case failed(SSHFailure)
    }

    /// A timer per purpose: a new one replaces the old.
    private enum TimerKey: Hashable {
        case probeTick
        case retryForwards(String)
        case reconnect
        case other(Int)
    }

    private struct Tracked {
        var task: Task<Void, Never>
        /// Cancelled once the machine's generation passes this one; nil: runs to the end (a master's stop,
        /// its exit, a request's completion).
        var generation: Int?
    }

    let host: String
    let destination: Destination
    let liveness: SSHCommand.Liveness
    let paths: FwdPaths
    let writer: StoreWriter
    /// Where questions of this host's logins go (see `LoginSession`); nil with no askpass program.
    let logins: LoginBroker?
    let askpass: String?
    private var machine: HostMachine
    private let inputs: AsyncStream<Input>.Continuation
    private let clock = ContinuousClock()
    private let origin: ContinuousClock.Instant
    /// The live master and the generation it was spawned for.
    private var master: (generation: Int, process: ControlMaster)?
    private var waiting: [Int: Settle] = [:]
    private var pathWaiting: [Int: CheckedContinuation<String, Never>] = [:]
    /// The current master's path (issue 13), for the machine's `pathCheck` verdicts.
    private var path: (generation: Int, path: MasterPath?, baseline: Double?)?
    private var nextToken = 0
    /// What `ssh -G` says for the host (where reconnect polling looks for the server): the latest answer.
    private var resolved: ResolvedHost?
    /// The live master's probe context (its mux connection for remote and dynamic probes).
    private var probeContext: (pid: Int32, context: MasterProbeContext)?
    private var tasks: [Int: Tracked] = [:]
    private var nextTask = 0
    private var timers: [TimerKey: Tracked] = [:]
    /// The last mux request to the current master: requests go one after another, in the order the machine
    /// asked (a cancel before the add that repeats it).
    private var muxTail: Task<Void, Never>?
    /// The previous master's stop: the next master starts after it (they share the control socket's path).
    private var stopping: Task<Void, Never>?
    /// A spawn under way: by the time it ends, its master is adopted or stopped.
    private var spawning: Task<Void, Never>?
    /// What the event being handled started that a request's completion waits for: its mux requests, and
    /// whether it stops the master. Only these: a request is never held up by another one's stuck work.
    private var batch: (mux: Task<Void, Never>?, stopsMaster: Bool) = (nil, false)
    private var sweptGeneration = 0

    init(host: String, entry: HostEntry?, paths: FwdPaths, writer: StoreWriter, options: SupervisorOptions, logins: LoginBroker? = nil) {
        self.host = host
        self.logins = logins
        self.askpass = options.askpass
        self.destination = Destination(host)
        self.liveness = SSHCommand.Liveness(entry)
        self.paths = paths
        self.writer = writer
        var settings = HostMachine.Settings(options)
        settings.maxAttempts = entry?.maxAttempts ?? 0
        var backoff = options.backoff
        if let cap = entry?.retryMaxDelay { backoff.cap = Double(cap) }
        self.machine = HostMachine(host: host, settings: settings, backoff: backoff)
        self.origin = clock.now
        let (stream, continuation) = AsyncStream<Input>.makeStream()
        self.inputs = continuation
        Task { await self.run(stream) }
    }

    /// Hands the runner the tunnels wanted on its host; the returned value settles once their state is recorded
    /// and what the change needed (forwards cancelled, the master stopped) is done.
    nonisolated func submit(_ tunnels: [Tunnel], retry: Set<String>) -> Settle {
        let done = Settle()
        inputs.yield(.update(tunnels, retry: retry, done: done))
        return done
    }

    nonisolated func update(_ tunnels: [Tunnel], retry: Set<String>) async {
        await submit(tunnels, retry: retry).wait()
    }

    nonisolated func check(_ names: Set<String>?) async {
        let done = Settle()
        inputs.yield(.check(names, done: done))
        await done.wait()
    }

    nonisolated func stop() async {
        let done = Settle()
        inputs.yield(.stop(done: done))
        await done.wait()
    }

    nonisolated func resolved(_ r: ResolvedHost) { inputs.yield(.resolved(r)) }

    /// Looks at the master after `trigger`; returns one line saying what was done.
    nonisolated func pathCheck(_ trigger: PathTrigger) async -> String {
        await withCheckedContinuation { inputs.yield(.pathCheck(trigger, done: $0)) }
    }

    /// The same without waiting: a burst of network events must not queue behind one check.
    nonisolated func notify(_ trigger: PathTrigger) { inputs.yield(.pathCheck(trigger, done: nil)) }

    /// Ends the event loop; call after `stop` so the runner can be released.
    nonisolated func finish() { inputs.finish() }

    var isIdle: Bool { machine.isIdle }

    /// Tasks and timers running now (for tests).
    var liveWork: (tasks: Int, timers: Int) { (tasks.count, timers.values.filter { !$0.task.isCancelled }.count) }

    private nonisolated func send(_ event: HostMachine.Event) { inputs.yield(.event(event)) }

    private func run(_ stream: AsyncStream<Input>) async {
        for await input in stream {
            switch input {
            case .event(let e):
                if case .masterExited(let g, _, _) = e, master?.generation == g { master = nil }
                handle(e)
            case .update(let list, let retry, let done): handle(.update(list, retry: retry, token: wait(done)))
            case .check(let names, let done): handle(.check(names, token: wait(done)))
            case .stop(let done): handle(.stop(token: wait(done)))
            case .resolved(let r): resolved = r
            case .pathCheck(let trigger, let done): handle(pathEvent(trigger, done: done))
            case .pathLearned(let g, let learned, let baseline):
                if g == machine.generation { path = (g, learned, baseline) }
            case .taskEnded(let id): tasks[id] = nil
            }
        }
        for work in tasks.values { work.task.cancel() }
        for timer in timers.values { timer.task.cancel() }
        tasks = [:]
        timers = [:]
    }

    private func wait(_ done: Settle) -> Int {
        nextToken += 1
        waiting[nextToken] = done
        return nextToken
    }

    private var now: Double {
        (clock.now - origin).inSeconds
    }

    private func handle(_ event: HostMachine.Event) {
        let actions = machine.handle(event, now: now)
        batch = (nil, false)
        if case .stop = event { batch.stopsMaster = true }
        if machine.generation != sweptGeneration { sweep() }
        // The records of one step (a probe round's, one per tunnel) go to the writer together, so it commits
        // them in one transaction; they are handed over before any other action, which may wait for them.
        var records: [StoreWrite] = []
        for action in actions {
            if case .record(let write) = action {
                records.append(write)
                continue
            }
            writer.enqueue(contentsOf: records)
            records = []
            perform(action)
        }
        writer.enqueue(contentsOf: records)
    }

    /// The machine moved to a new generation: what belonged to older ones is cancelled.
    private func sweep() {
        sweptGeneration = machine.generation
        for (id, work) in tasks where (work.generation ?? .max) < sweptGeneration {
            work.task.cancel()
            tasks[id] = nil
        }
        for (key, timer) in timers where (timer.generation ?? .max) < sweptGeneration {
            timer.task.cancel()
            timers[key] = nil
        }
    }

    /// Runs `body` as a tracked child task; it reports its result as an event itself.
    @discardableResult
    private func track(generation: Int?, _ body: @escaping @Sendable () async -> Void) -> Task<Void, Never> {
        nextTask += 1
        let id = nextTask
        let task = Task { [weak self] in
            await body()
            self?.inputs.yield(.taskEnded(id))
        }
        tasks[id] = Tracked(task: task, generation: generation)
        return task
    }

    private func schedule(_ key: TimerKey, generation: Int, after seconds: Double, _ event: HostMachine.Event) {
        timers[key]?.task.cancel()
        let task = Task { [weak self] in
            try? await Task.sleep(for: .seconds(seconds))
            if !Task.isCancelled { self?.send(event) }
        }
        timers[key] = Tracked(task: task, generation: generation)
    }

    /// Queues a mux request behind the ones already sent to this master.
    private func mux(generation: Int, _ body: @escaping @Sendable () async -> Void) {
        let previous = muxTail
        muxTail = track(generation: generation) {
            await previous?.value
            guard !Task.isCancelled else { return }
            await body()
        }
        batch.mux = muxTail
    }

    /// Starts one action. Nothing here waits: what takes time runs in a tracked task.
    private func perform(_ action: HostAction) {
        switch action {
        case .spawnMaster(let g):
            let previous = stopping
            let plan = LaunchPlan(runner: self)
            // Not cancelled with its generation, and holding the runner: a started ssh must be adopted or ended.
            spawning = track(generation: nil) {
                await previous?.value
                let launch = await plan.launch()
                await self.launched(g, launch)
            }
        case .stopMaster(let reason):
            batch.stopsMaster = true
            guard let (_, m) = master else { return }
            retire(m, reason: reason)
        case .terminateMaster:
            master?.process.terminate()
        case .addForward(let g, let tunnel, let f):
            guard let (_, m) = master else { return }
            mux(generation: g) { [weak self] in
                let outcome = await Self.add(f, socket: m.socket)
                self?.send(.forwardAdded(generation: g, tunnel: tunnel, f, outcome))
            }
        case .cancelForward(let f):
            guard let (g, m) = master else { return }
            // A forward the master no longer has is refused ("port not found"): nothing to undo either way.
            mux(generation: g) { _ = try? await Self.muxForward(f, cancel: true, socket: m.socket) }
        case .probe(let g, let jobs, let tunnels):
            guard let (_, m) = master else { return }
            probe(g, jobs, tunnels, pid: m.pid, socket: m.socket)
        case .waitToReconnect(let g, let delay, let patience, let outage, let pollServer):
            let known = resolved
            let destination = self.destination, paths = self.paths
            timers[.reconnect]?.task.cancel()
            let task = Task { [weak self] in
                var target: (host: String, port: Int)?
                if pollServer {
                    var resolution = known
                    if resolution == nil, let asked = try? await SSHResolver.resolve(destination, paths: paths) {
                        resolution = asked
                        self?.inputs.yield(.resolved(asked))
                    }
                    target = ReconnectGate.serverAddress(resolution)
                }
                await ReconnectGate.wait(delay: delay, patience: patience, outage: outage, target: target)
                if !Task.isCancelled { self?.send(.connectDue(generation: g)) }
            }
            timers[.reconnect] = Tracked(task: task, generation: g)
        case .schedule(let event, let seconds):
            switch event {
            case .probeTick(let g): schedule(.probeTick, generation: g, after: seconds, event)
            case .retryForwards(let g, let tunnel): schedule(.retryForwards(tunnel), generation: g, after: seconds, event)
            default:
                nextTask += 1
                schedule(.other(nextTask), generation: machine.generation, after: seconds, event)
            }
        case .record(let write):
            writer.enqueue(write)
        case .learnPath(let g):
            guard let (_, m) = master else { return }
            // The baseline is the round trip the master's dynamic probes take anyway (shared, not a second one).
            let context = probeContext(pid: m.pid, socket: m.socket)
            track(generation: g) { [weak self] in
                let learned = await offPool { MasterPath.discover(pid: m.pid) }
                self?.inputs.yield(.pathLearned(generation: g, learned, baseline: nil))
                if case .answered(let rtt) = await context.transportRoundTrip(until: .now + .seconds(2)) {
                    self?.inputs.yield(.pathLearned(generation: g, learned, baseline: rtt.inSeconds))
                }
            }
        case .checkTransport(let g, let reason):
            guard let (_, m) = master else { return }
            let timeout = TransportCheck.timeout(baseline: path?.generation == g ? path?.baseline : nil)
            track(generation: g) { [weak self] in
                let outcome = await TransportCheck.run(socket: m.socket, timeout: timeout)
                self?.send(.transportChecked(generation: g, answered: outcome.answered, ms: Int((outcome.seconds * 1000).rounded()), reason: reason))
            }
        case .answered(let token, let line):
            pathWaiting.removeValue(forKey: token)?.resume(returning: line)
        case .finished(let token):
            guard let done = waiting.removeValue(forKey: token) else { return }
            // The request's effects are done first: its mux requests, a master it stopped, and what it recorded
            // is committed, before its caller goes on to read or report it.
            let (mux, stops, spawn, writer) = (batch.mux, batch.stopsMaster, spawning, self.writer)
            track(generation: nil) { [weak self] in
                await mux?.value
                if stops {
                    // A spawn under way ends with its master adopted or being stopped: the stop is then current.
                    await spawn?.value
                    await self?.stopping?.value
                }
                await writer.flush()
                done.resume()
            }
        }
    }

    /// Ends `m` (SIGTERM, SIGKILL after 2 s) in a task the next master waits for.
    private func retire(_ m: ControlMaster, reason: String) {
        if master?.process === m {
            master = nil
            muxTail = nil
            probeContext = nil
        }
        let previous = stopping
        let (writer, host) = (self.writer, self.host)
        stopping = track(generation: nil) {
            await previous?.value
            await m.stop()
            writer.enqueue(.removeMaster(host: host))
            writer.enqueue(.log(.master, tunnel: nil, host: host, message: "stopped ssh pid \(m.pid): \(reason)"))
        }
    }

    /// What `trigger` means for the live master's path: the decision is `PathTrigger.verdict`; the route lookup
    /// it may need asks the kernel (a UDP connect, no packet sent).
    private func pathEvent(_ trigger: PathTrigger, done: CheckedContinuation<String, Never>?) -> HostMachine.Event {
        let current = path?.generation == machine.generation ? path?.path : nil
        let mayRestore: Bool
        if case .network(let change) = trigger { mayRestore = change.mayRestorePath } else { mayRestore = true }
        var token: Int?
        if let done {
            nextToken += 1
            pathWaiting[nextToken] = done
            token = nextToken
        }
        return .pathCheck(trigger.verdict(for: current, route: MasterPath.route(to:)), trigger: trigger.description,
                          mayRestore: mayRestore, token: token)
    }

    // MARK: the master

    /// What a spawn needs, taken from the runner so the spawn runs off its loop.
    private struct LaunchPlan: Sendable {
        var host: String
        var destination: Destination
        var liveness: SSHCommand.Liveness
        var paths: FwdPaths
        var writer: StoreWriter
        var relayProgram: String?
        var logPath: String

        init(runner: isolated HostRunner) {
            host = runner.host
            destination = runner.destination
            liveness = runner.liveness
            paths = runner.paths
            writer = runner.writer
            relayProgram = runner.logins == nil ? nil : runner.askpass
            logPath = runner.paths.sshLog(host: runner.host)
        }

        func launch() async -> Launch {
            // fwd names the socket (FwdPaths.controlSocket), so the master starts without a `ssh -G` first.
            let socket = paths.controlSocket(for: host)
            do {
                try FileSystem.makeSocketDirectory(paths.controlDirectory)
                try FileSystem.makePrivateDirectory(paths.logDirectory)
            } catch {
                return .failed(SSHFailure(failureClass: .fatal, evidence: "\(error)", advice: "fix the directory, then `fwd up` again"))
            }
            if let busy = await clearStaleSocket(socket) { return .failed(busy) }
            // Every master may ask a person (without BatchMode, through a relay): one that logs in by agent or key
            // simply never asks. Probes and -O commands keep BatchMode.
            let relay = loginRelay()
            let command = SSHCommand.master(ssh: paths.ssh, config: paths.rootSSHConfig, destination: destination,
                                            socket: socket, liveness: liveness, batchMode: relay == nil)
            do {
                let m = try await ControlMaster.spawn(command, socket: socket, logPath: logPath, environment: relay?.environment ?? [:])
                return .master(m, relay)
            } catch {
                relay?.close()
                return .failed(SSHFailure(failureClass: .fatal, evidence: "\(error)",
                                          advice: "install the OpenSSH client (apt-get install openssh-client)"))
            }
        }

        /// A relay for the next master's questions, when fwd can be its askpass; nil (BatchMode) otherwise.
        private func loginRelay() -> AskpassRelay? {
            guard let relayProgram else { return nil }
            do {
                return try AskpassRelay(directory: paths.controlDirectory, askpassProgram: relayProgram)
            } catch {
                writer.enqueue(.log(.error, tunnel: nil, host: host, message: "logins cannot ask at a terminal: \(error)"))
                return nil
            }
        }

        /// After a master is SIGKILLed its socket file stays, and a new master would then run without one
        /// (docs/architecture.md, "ControlPath and stale sockets"): remove it. A socket that answers belongs to
        /// a live master fwd did not start (a plain `ssh TUNNEL` session): fwd will not kill someone's session,
        /// so it reports the conflict instead.
        private func clearStaleSocket(_ socket: String) async -> SSHFailure? {
            guard FileSystem.exists(socket) else { return nil }
            if let r = try? await CommandRunner.run(SSHCommand.mux(ssh: paths.ssh, socket: socket, .check), timeout: .seconds(3)), r.status == 0 {
                let owner = r.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
                return SSHFailure(failureClass: .retry, evidence: "an ssh master fwd did not start already serves \(socket) (\(owner))",
                                  advice: "end that ssh session (`ssh -O exit -S \(socket) x`); fwd retries")
            }
            unlink(socket)
            return nil
        }
    }

    /// A spawn finished. A master that is no longer wanted (the machine moved on meanwhile) is ended at once.
    private func launched(_ g: Int, _ launch: Launch) {
        switch launch {
        case .failed(let failure):
            handle(.spawnFailed(generation: g, failure))
        case .master(let m, let relay):
            guard g == machine.generation, machine.master == .connecting(pid: nil) else {
                relay?.close()
                retire(m, reason: "no longer wanted once it started")
                return
            }
            master = (g, m)
            let (writer, host) = (self.writer, self.host)
            if let relay, let logins {
                relay.attach(masterPid: m.pid, stderrLog: m.logPath, stderrOffset: m.logOffset) { m.terminate() }
                LoginSession.start(relay: relay, broker: logins, host: host, generation: g,
                                   tunnels: { [weak self] in await self?.tunnelNames ?? [] }) { [weak self] in self?.send($0) }
            }
            track(generation: nil) { [weak self] in
                let status = await m.waitExit()
                relay?.close()
                writer.enqueue(.removeMaster(host: host))
                self?.send(.masterExited(generation: g, status: status, stderr: m.stderr()))
            }
            track(generation: g) { [weak self] in
                // Ready when the socket appears: ssh binds a temporary name, listens, and only then links the
                // ControlPath, all after authentication, so the path existing means the master takes requests.
                guard await m.waitForSocket(), !Task.isCancelled else { return }
                Task { await MuxClient.nudge(m.socket, at: MuxClient.loginNudges) }  // see there: sshd's Nagle after a login
                writer.enqueue(contentsOf: [
                    .saveMaster(MasterRecord(host: host, pid: Int(m.pid), startTime: ProcessTable.startTime(of: m.pid) ?? 0,
                                             socket: m.socket, startedAt: m.startedAt)),
                    .tally(TallyKey(.connectSeconds, host), [max(0, Date().timeIntervalSince(m.startedAt))]),
                ])
                self?.send(.masterReady(generation: g))
            }
            handle(.spawned(generation: g, pid: m.pid))
        }
    }

    private var tunnelNames: Set<String> { Set(machine.tunnels.keys) }

    // MARK: forwards

    /// Adds the forward by speaking the master's mux protocol itself: the request `ssh -O forward` would send,
    /// without starting an ssh process per forward.
    private static func add(_ f: ForwardSpec, socket: String) async -> HostMachine.MuxOutcome {
        let failure: MuxClient.Failure
        if f.kind == .local, case .unix(let path) = f.listen, UnixSocket.removeStale(path) == .otherFile {
            return .refused("cannot bind \(path): Address already in use", holder: "a file that is not a socket, which fwd never deletes")
        }
        let start = ContinuousClock.now
        do {
            let port = try await muxForward(f, cancel: false, socket: socket)
            return .added(allocatedPort: port, ms: (ContinuousClock.now - start).inSeconds * 1000)
        } catch {
            failure = error
        }
        guard case .refused(let text) = failure else { return .notRun(failure.description) }
        // Who holds the port is worth a scan of /proc only when the port is what failed.
        let conflict = SSHFailure.classify(stderr: text, status: 255).failureClass == .localConflict
        let holder = conflict ? f.listenPort.flatMap(ProcessTable.holder(ofPort:)) : nil
        return .refused(text, holder: holder)
    }

    private static func muxForward(_ f: ForwardSpec, cancel: Bool, socket: String) async throws(MuxClient.Failure) -> Int? {
        let deadline = ContinuousClock.now + .seconds(10)
        var client = try await MuxClient.connect(socket, until: deadline)
        return try await client.forward(f, cancel: cancel, until: deadline)
    }

    // MARK: probes

    /// What the live master's probes share; a new master starts a new one.
    private func probeContext(pid: Int32, socket: String) -> MasterProbeContext {
        if let current = probeContext, current.pid == pid { return current.context }
        let context = MasterProbeContext(controlSocket: socket)
        probeContext = (pid, context)
        return context
    }

    /// Starts the round's probes at once (a silent remote target holds its probe for the whole timeout, and
    /// one after another they would hold up every other tunnel); their results come back as one event.
    private func probe(_ g: Int, _ jobs: [HostMachine.ProbeJob], _ tunnels: [Tunnel], pid: Int32, socket: String) {
        // One per live master: its dynamic forwards share one transport round trip.
        let master = probeContext(pid: pid, socket: socket)
        let targets = Dictionary(uniqueKeysWithValues: tunnels.map { ($0.name, $0.probeTarget) })
        // A degraded forward makes the master log a line per probe: the log is kept in bounds at the same pace.
        let live = self.master.flatMap { $0.generation == g ? $0.process : nil }
        let publics = Set(tunnels.filter(\.isPublic).map(\.name))
        let shares = SharePlan(runner: self, generation: g, pid: pid)
        track(generation: g) { [weak self] in
            live?.capLog()
            let sharing = await shares.places(for: jobs, publicTunnels: publics)
            if let asked = sharing.resolved { self?.inputs.yield(.resolved(asked)) }
            let results = await withTaskGroup(of: (String, Int, ProbeResult).self) { group in
                for (n, job) in jobs.enumerated() {
                    var probe = HealthProbe(kind: job.kind, timeout: 2, socksTarget: targets[job.tunnel] ?? nil, master: master,
                                            sharedAt: sharing.places[n])
                    probe.keptOnLoopback = job.keptOnLoopback
                    group.addTask {
                        (job.tunnel, job.index, await probe.run(job.forward, allocatedPort: job.allocatedPort,
                                                                listenerConfirmedMs: job.listenerConfirmedMs))
                    }
                }
                return await group.reduce(into: [String: [Int: ProbeResult]]()) { $0[$1.0, default: [:]][$1.1] = $1.2 }
            }
            self?.send(.probed(generation: g, tunnels.map { HostMachine.ProbedTunnel(tunnel: $0, results: results[$0.name] ?? [:]) }))
        }
    }

    /// Where a probe round checks public forwards beyond loopback (`Sharing`), taken from the runner so the
    /// round works it out off its loop: the server's own address for -R (from `ssh -G` and the master's
    /// path), this machine's addresses for -L and -D. Worked out each round, so each new master is checked
    /// at the address it connected to.
    private struct SharePlan: Sendable {
        var resolved: ResolvedHost?
        var path: MasterPath?
        var pid: Int32
        var destination: Destination
        var paths: FwdPaths

        init(runner: isolated HostRunner, generation: Int, pid: Int32) {
            resolved = runner.resolved
            path = runner.path?.generation == generation ? runner.path?.path : nil
            self.pid = pid
            destination = runner.destination
            paths = runner.paths
        }

        /// One list per job, in the jobs' order (empty for a forward that is not shared), and what `ssh -G` said
        /// when it had to be asked (the runner keeps it: one question, not one per round).
        func places(for jobs: [HostMachine.ProbeJob], publicTunnels: Set<String>) async -> (places: [[String]], resolved: ResolvedHost?) {
            let shared = jobs.map { Sharing.isShared($0.forward, isPublic: publicTunnels.contains($0.tunnel)) }
            guard shared.contains(true) else { return (jobs.map { _ in [] }, nil) }
            let interfaces = jobs.indices.contains { shared[$0] && jobs[$0].forward.kind != .remote } ? Sharing.interfaceAddresses() : []
            var server: String?, asked: ResolvedHost?
            if jobs.indices.contains(where: { shared[$0] && jobs[$0].forward.kind == .remote && !jobs[$0].keptOnLoopback }) {
                if resolved == nil { asked = try? await SSHResolver.resolve(destination, paths: paths) }
                let pid = self.pid
                let learned = if let path { path } else { await offPool { MasterPath.discover(pid: pid) } }
                server = Sharing.serverAddress(resolved: resolved ?? asked, path: learned)
            }
            let places = jobs.indices.map { n -> [String] in
                guard shared[n] else { return [] }
                let job = jobs[n]
                if job.forward.kind == .remote {
                    return Sharing.remoteCheckHost(job.forward, isPublic: true, server: server).map { [$0] } ?? []
                }
                return Sharing.localAddresses(job.forward, isPublic: true, interfaces: interfaces)
            }
            return (places, asked)
        }
    }
}
