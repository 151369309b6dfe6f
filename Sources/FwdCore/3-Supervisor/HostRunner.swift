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

    package init() {}

    package static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) -> SupervisorOptions {
        var o = SupervisorOptions()
        if let s = env["FWD_PROBE_INTERVAL"], let v = Double(s), v > 0 { o.probeInterval = v }
        if let s = env["FWD_IDLE_EXIT"], let v = Double(s), v > 0 { o.idleExit = v }
        return o
    }
}

/// Runs one SSH host's `HostMachine`: performs the actions it returns (spawn and watch the master, mux
/// commands, probes, timers, store writes) and feeds their results back to it as events. Events are handled one
/// at a time; the results of mux commands, which run inline, are handled before the next event from outside.
actor HostRunner {
    private enum Input: Sendable {
        case event(HostMachine.Event)
        case update([Tunnel], retry: Set<String>, done: CheckedContinuation<Void, Never>)
        case check(Set<String>?, done: CheckedContinuation<Void, Never>)
        case stop(done: CheckedContinuation<Void, Never>)
        /// What `ssh -G` says for the host, from the supervisor (after a config change, resolved while masters connect).
        case resolved(ResolvedHost)
        case pathCheck(PathTrigger, done: CheckedContinuation<String, Never>?)
        /// The live master's network path, and what a transport check took on it right after it connected.
        case pathLearned(generation: Int, MasterPath?, baseline: Double?)
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
    private var master: ControlMaster?
    private var waiting: [Int: CheckedContinuation<Void, Never>] = [:]
    private var pathWaiting: [Int: CheckedContinuation<String, Never>] = [:]
    /// The current master's path (issue 13), for the machine's `pathCheck` verdicts.
    private var path: (generation: Int, path: MasterPath?, baseline: Double?)?
    private var nextToken = 0
    /// What `ssh -G` says for the host (where reconnect polling looks for the server): the supervisor's latest
    /// answer, kept until a newer one arrives.
    private var resolved: ResolvedHost?
    /// The live master's probe context (its mux connection for remote and dynamic probes).
    private var probeContext: (pid: Int32, context: MasterProbeContext)?

    init(host: String, entry: HostEntry?, paths: FwdPaths, writer: StoreWriter, options: SupervisorOptions, logins: LoginBroker? = nil) {
        self.host = host
        self.logins = logins
        self.askpass = options.askpass
        self.destination = Destination(host)
        self.liveness = SSHCommand.Liveness(entry)
        self.paths = paths
        self.writer = writer
        self.machine = HostMachine(host: host, settings: .init(options), backoff: options.backoff)
        self.origin = clock.now
        let (stream, continuation) = AsyncStream<Input>.makeStream()
        self.inputs = continuation
        Task { await self.run(stream) }
    }

    nonisolated func update(_ tunnels: [Tunnel], retry: Set<String>) async {
        await withCheckedContinuation { inputs.yield(.update(tunnels, retry: retry, done: $0)) }
    }

    nonisolated func check(_ names: Set<String>?) async {
        await withCheckedContinuation { inputs.yield(.check(names, done: $0)) }
    }

    nonisolated func stop() async {
        await withCheckedContinuation { inputs.yield(.stop(done: $0)) }
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

    private nonisolated func send(_ event: HostMachine.Event) { inputs.yield(.event(event)) }

    private func run(_ stream: AsyncStream<Input>) async {
        for await input in stream {
            switch input {
            case .event(let e): await handle(e)
            case .update(let list, let retry, let done): await handle(.update(list, retry: retry, token: wait(done)))
            case .check(let names, let done): await handle(.check(names, token: wait(done)))
            case .stop(let done): await handle(.stop(token: wait(done)))
            case .resolved(let r): resolved = r
            case .pathCheck(let trigger, let done): await handle(pathEvent(trigger, done: done))
            case .pathLearned(let g, let learned, let baseline):
                if g == machine.generation { path = (g, learned, baseline) }
            }
        }
    }

    private func wait(_ done: CheckedContinuation<Void, Never>) -> Int {
        nextToken += 1
        waiting[nextToken] = done
        return nextToken
    }

    private var now: Double {
        (clock.now - origin).inSeconds
    }

    private func handle(_ first: HostMachine.Event) async {
        var queue = [first]
        while !queue.isEmpty {
            let event = queue.removeFirst()
            // The records of one step (a probe round's, one per tunnel) go to the writer together, so it commits
            // them in one transaction; they are handed over before any other action, which may wait for them.
            var records: [StoreWrite] = []
            for action in machine.handle(event, now: now) {
                if case .record(let write) = action {
                    records.append(write)
                    continue
                }
                writer.enqueue(contentsOf: records)
                records = []
                if let result = await perform(action) { queue.append(result) }
            }
            writer.enqueue(contentsOf: records)
        }
    }

    /// Runs one action; returns the event that reports its result when it finished inline.
    private func perform(_ action: HostAction) async -> HostMachine.Event? {
        switch action {
        case .spawnMaster(let g):
            return await spawnMaster(g)
        case .stopMaster(let reason):
            guard let m = master else { return nil }
            master = nil
            await m.stop()
            writer.enqueue(.removeMaster(host: host))
            writer.enqueue(.log(.master, tunnel: nil, host: host, message: "stopped ssh pid \(m.pid): \(reason)"))
        case .terminateMaster:
            master?.terminate()
        case .addForward(let g, let tunnel, let f):
            guard let m = master else { return nil }
            return .forwardAdded(generation: g, tunnel: tunnel, f, await add(f, on: m))
        case .cancelForward(let f):
            guard let m = master else { return nil }
            // A forward the master no longer has is refused ("port not found"): nothing to undo either way.
            _ = try? await Self.muxForward(f, cancel: true, socket: m.socket)
        case .probe(let g, let jobs, let tunnels):
            guard let m = master else { return nil }
            probe(g, jobs, tunnels, pid: m.pid, socket: m.socket)
        case .waitToReconnect(let g, let delay, let patience, let outage, let pollServer):
            let target = pollServer ? serverAddress(await resolution()) : nil
            Task { [weak self] in
                await Self.waitToReconnect(delay: delay, patience: patience, outage: outage, target: target) { [weak self] in
                    await self?.isWaiting(g) ?? false
                }
                self?.send(.connectDue(generation: g))
            }
        case .schedule(let event, let seconds):
            Task { [weak self] in
                try? await Task.sleep(for: .seconds(seconds))
                self?.send(event)
            }
        case .record(let write):
            writer.enqueue(write)
        case .learnPath(let g):
            guard let m = master else { return nil }
            // The baseline is the round trip the master's dynamic probes take anyway (shared, not a second one).
            let context = probeContext(pid: m.pid, socket: m.socket)
            Task { [weak self] in
                let learned = await offPool { MasterPath.discover(pid: m.pid) }
                self?.inputs.yield(.pathLearned(generation: g, learned, baseline: nil))
                if case .answered(let rtt) = await context.transportRoundTrip(until: .now + .seconds(2)) {
                    self?.inputs.yield(.pathLearned(generation: g, learned, baseline: rtt.inSeconds))
                }
            }
        case .checkTransport(let g, let reason):
            guard let m = master else { return nil }
            let timeout = TransportCheck.timeout(baseline: path?.generation == g ? path?.baseline : nil)
            Task { [weak self] in
                let outcome = await TransportCheck.run(socket: m.socket, timeout: timeout)
                self?.send(.transportChecked(generation: g, answered: outcome.answered, ms: Int((outcome.seconds * 1000).rounded()), reason: reason))
            }
        case .answered(let token, let line):
            pathWaiting.removeValue(forKey: token)?.resume(returning: line)
        case .finished(let token):
            // What the request recorded is committed before its caller goes on to read or report it.
            await writer.flush()
            waiting.removeValue(forKey: token)?.resume()
        }
        return nil
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

    private func isWaiting(_ g: Int) -> Bool { machine.generation == g && machine.master == .waiting }

    // MARK: the master

    private func spawnMaster(_ g: Int) async -> HostMachine.Event {
        // fwd names the socket (FwdPaths.controlSocket), so the master starts without a `ssh -G` first.
        let socket = paths.controlSocket(for: host)
        do {
            try FileSystem.makeOwnedDirectory(paths.controlDirectory)
            try FileSystem.makePrivateDirectory(paths.logDirectory)
        } catch {
            return .spawnFailed(generation: g, SSHFailure(failureClass: .fatal, evidence: "\(error)", advice: "fix the directory, then `fwd up` again"))
        }
        if let busy = await clearStaleSocket(socket) { return .spawnFailed(generation: g, busy) }
        // Every master may ask a person (without BatchMode, through a relay): one that logs in by agent or key
        // simply never asks. Probes and -O commands keep BatchMode.
        let relay = loginRelay()
        let command = SSHCommand.master(ssh: paths.ssh, config: paths.rootSSHConfig, destination: destination,
                                        socket: socket, liveness: liveness, batchMode: relay == nil)
        let m: ControlMaster
        do {
            m = try await ControlMaster.spawn(command, socket: socket, logPath: logPath, environment: relay?.environment ?? [:])
        } catch {
            relay?.close()
            return .spawnFailed(generation: g, SSHFailure(failureClass: .fatal, evidence: "\(error)",
                                                          advice: "install the OpenSSH client (apt-get install openssh-client)"))
        }
        master = m
        let writer = self.writer
        let host = self.host
        if let relay, let logins {
            relay.attach(masterPid: m.pid, stderrLog: m.logPath, stderrOffset: m.logOffset) { m.terminate() }
            LoginSession.start(relay: relay, broker: logins, host: host, generation: g,
                               tunnels: { [weak self] in await self?.tunnelNames ?? [] }) { [weak self] in self?.send($0) }
        }
        Task { [weak self] in
            let status = await m.waitExit()
            relay?.close()
            writer.enqueue(.removeMaster(host: host))
            self?.send(.masterExited(generation: g, status: status, stderr: m.stderr()))
        }
        Task { [weak self] in
            // Ready when the socket appears: ssh binds a temporary name, listens, and only then links the
            // ControlPath, all after authentication, so the path existing means the master takes requests.
            // (clearStaleSocket removed any older file there.)
            guard await m.waitForSocket() else { return }
            Task { await MuxClient.nudge(m.socket, at: MuxClient.loginNudges) }  // see there: sshd's Nagle after a login
            writer.enqueue(.saveMaster(MasterRecord(host: host, pid: Int(m.pid), startTime: ProcessTable.startTime(of: m.pid) ?? 0,
                                                    socket: m.socket, startedAt: m.startedAt)))
            self?.send(.masterReady(generation: g))
        }
        return .spawned(generation: g, pid: m.pid)
    }

    /// A relay for the next master's questions, when fwd can be its askpass; nil (BatchMode) otherwise.
    private func loginRelay() -> AskpassRelay? {
        guard let askpass, logins != nil else { return nil }
        do {
            return try AskpassRelay(directory: paths.controlDirectory, askpassProgram: askpass)
        } catch {
            writer.enqueue(.log(.error, tunnel: nil, host: host, message: "logins cannot ask at a terminal: \(error)"))
            return nil
        }
    }

    private var tunnelNames: Set<String> { Set(machine.tunnels.keys) }

    /// What `ssh -G` says for the host: the supervisor's answer, or asked here when none has arrived yet.
    private func resolution() async -> ResolvedHost? {
        if resolved == nil { resolved = try? await SSHResolver.resolve(destination, paths: paths) }
        return resolved
    }

    private var logPath: String { "\(paths.logDirectory)/\(host.replacingOccurrences(of: "/", with: "_")).log" }

    /// After a master is SIGKILLed its socket file stays, and a new master would then run without one
    /// (docs/architecture.md, "ControlPath and stale sockets"): remove it. A socket that answers belongs to a live master fwd did not start (a plain
    /// `ssh TUNNEL` session): fwd will not kill someone's session, so it reports the conflict instead.
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

    /// Waits out the backoff, but reconnects as soon as the SSH port accepts again after having been seen
    /// closed: a restarted server is back in use within a poll interval instead of a whole backoff step.
    /// While the port does not accept, no ssh is started even once the backoff is over (for up to `patience`
    /// more seconds): one started into a dead path sits in SYN retries until ConnectTimeout and misses the
    /// path's return. Returns early when `stillWanted` turns false.
    private static func waitToReconnect(delay: Double, patience: Double, outage: Double, target: (host: String, port: Int)?,
                                        stillWanted: @Sendable () async -> Bool) async {
        let deadline = Date().addingTimeInterval(delay)
        // Resolved once, as ssh would: a HostName is usually a name, and the poll must not ask DNS every 20 ms.
        // The port counts as open when any of the name's addresses accepts (ssh may use either family).
        let addresses = if let target { await Resolver.numericHosts(target.host) } else { [String]() }
        guard let target, !addresses.isEmpty else {
            try? await Task.sleep(for: .seconds(delay))
            return
        }
        // Poll fast while an outage is young (a restarting server), then ease off so a host that is gone for
        // hours does not get fifty connection attempts a second.
        let interval = outage < 10 ? 20 : outage < 60 ? 250 : 1000
        var sawDown = false
        while true {
            var open = false
            for address in addresses where !open {
                // Non-blocking, on the probes' poller: no thread per attempt.
                open = (try? await ProbeSocket.connect(to: .tcp(host: address, port: target.port), until: .now + .milliseconds(200))) != nil
            }
            if open && (sawDown || Date() >= deadline) { return }
            if !open && Date() >= deadline.addingTimeInterval(patience) { return }
            guard await stillWanted() else { return }
            sawDown = sawDown || !open
            try? await Task.sleep(for: .milliseconds(open ? max(50, interval) : interval))
        }
    }

    /// The SSH server's address when fwd can reach it directly (no ProxyJump/ProxyCommand in the way).
    private func serverAddress(_ resolved: ResolvedHost?) -> (host: String, port: Int)? {
        guard let r = resolved, r.value("proxyjump") == nil || r.value("proxyjump") == "none",
              r.value("proxycommand") == nil || r.value("proxycommand") == "none",
              let hostname = r.value("hostname"), let port = Int(r.value("port") ?? "22") else { return nil }
        return (hostname, port)
    }

    // MARK: forwards

    /// Adds the forward by speaking the master's mux protocol itself: the request `ssh -O forward` would send,
    /// without starting an ssh process per forward.
    private func add(_ f: ForwardSpec, on m: ControlMaster) async -> HostMachine.MuxOutcome {
        let failure: MuxClient.Failure
        let start = ContinuousClock.now
        do {
            let port = try await Self.muxForward(f, cancel: false, socket: m.socket)
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
        Task { [weak self] in
            let results = await withTaskGroup(of: (String, Int, ProbeResult).self) { group in
                for job in jobs {
                    let probe = HealthProbe(kind: job.kind, timeout: 2, socksTarget: targets[job.tunnel] ?? nil, master: master)
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
}
