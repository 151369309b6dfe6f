import Foundation

/// Settings the supervisor runs with; tests shorten the intervals.
public struct SupervisorOptions: Sendable {
    /// Seconds between probes of a tunnel that is up.
    public var probeInterval: Double = 2
    /// Consecutive probes without an answer (connection open, nothing comes back) before the master is
    /// restarted: the transport is stalled even though ssh has not noticed yet.
    public var stalledProbeLimit = 3
    /// How often a `-R` forward refused by the server ("remote port forwarding failed") is retried before the
    /// tunnel is marked failed: the server may still hold an old session's listener until its ClientAlive fires.
    public var remoteListenerRetries = 6
    public var backoff = Backoff()

    public init() {}

    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) -> SupervisorOptions {
        var o = SupervisorOptions()
        if let s = env["FWD_PROBE_INTERVAL"], let v = Double(s), v > 0 { o.probeInterval = v }
        return o
    }
}

/// Supervises one SSH host: its ControlMaster and the forwards of every tunnel wanted on it. All work happens
/// in one event loop, so state changes never interleave; timers and process watchers only post events.
actor HostRunner {
    enum Event: Sendable {
        case update([Tunnel], retry: Set<String>, done: CheckedContinuation<Void, Never>?)
        /// What `ssh -G` says for the host, from the supervisor (after a config change, resolved while masters connect).
        case resolved(ResolvedHost)
        case connect(Int)
        case masterReady(Int)
        case masterExited(Int, status: Int32)
        case probeTick(Int)
        case retryForwards(Int, tunnel: String)
        case check(Set<String>?, CheckedContinuation<Void, Never>)
        case stop(CheckedContinuation<Void, Never>)
    }

    let host: String
    let destination: Destination
    let liveness: SSHCommand.Liveness
    let paths: FwdPaths
    let store: Store
    let options: SupervisorOptions
    private let events: AsyncStream<Event>.Continuation
    private var loop: Task<Void, Never>?

    private var tunnels: [String: Tunnel] = [:]
    /// Forwards live on the current master, per tunnel, as sent (cancel must repeat them exactly).
    private var added: [String: [ForwardSpec]] = [:]
    private var allocated: [ForwardSpec: Int] = [:]
    /// Tunnels that failed on their own (port taken, server listener held) while the host is fine.
    private var tunnelFailures: [String: String] = [:]
    private var remoteRetries: [String: Int] = [:]
    private var stalled: [String: Int] = [:]
    private var master: ControlMaster?
    private var readyAt: Date?
    /// What `ssh -G` says for the host (reconnect polling, the SOCKS probe's port): the supervisor's latest
    /// answer, kept until a newer one arrives.
    private var resolved: ResolvedHost?
    /// Bumped for every master and every stop, so events from an old master or timer are ignored.
    private var generation = 0
    private var connectPending = false
    private var fatal: SSHFailure?
    private var lastAttempt: Date?
    private var backoff: Backoff
    /// When the host was last lost; nil while a master is up.
    private var outageStart: Date?

    init(host: String, entry: HostEntry?, paths: FwdPaths, store: Store, options: SupervisorOptions) {
        self.host = host
        self.destination = Destination(host)
        self.liveness = SSHCommand.Liveness(entry)
        self.paths = paths
        self.store = store
        self.options = options
        self.backoff = options.backoff
        let (stream, continuation) = AsyncStream<Event>.makeStream()
        self.events = continuation
        Task { await self.run(stream) }
    }

    nonisolated func send(_ event: Event) { events.yield(event) }

    /// Ends the event loop; call after `stop` so the runner can be released.
    nonisolated func finish() { events.finish() }

    private func run(_ stream: AsyncStream<Event>) async {
        for await event in stream { await handle(event) }
    }

    var isIdle: Bool { tunnels.isEmpty && master == nil }

    private func handle(_ event: Event) async {
        switch event {
        case .update(let list, let retry, let done):
            await update(list, retry: retry)
            done?.resume()
        case .resolved(let r):
            resolved = r
        case .connect(let g) where g == generation && master == nil: await connect()
        case .masterReady(let g) where g == generation: await masterReady()
        case .masterExited(let g, let status) where g == generation: await masterExited(status: status)
        case .probeTick(let g) where g == generation && readyAt != nil:
            await probe(only: nil)
            schedule(.probeTick(generation), after: options.probeInterval)
        case .retryForwards(let g, let name) where g == generation && readyAt != nil:
            if let t = tunnels[name] { await addForwards(t) }
        case .check(let names, let done):
            if readyAt != nil { await probe(only: names) }
            done.resume()
        case .stop(let done):
            for name in tunnels.keys.sorted() { note(name, .down, error: nil, "taken down: the supervisor is stopping") }
            tunnels = [:]
            await stopMaster()
            done.resume()
        default:
            break
        }
    }

    // MARK: desired state

    private func update(_ list: [Tunnel], retry: Set<String>) async {
        let wanted = Dictionary(uniqueKeysWithValues: list.map { ($0.name, $0) })
        for (name, old) in tunnels where wanted[name] != old {
            if readyAt != nil { await cancelForwards(name) }
            if wanted[name] == nil {
                note(name, .down, error: nil, "taken down")
            }
            tunnelFailures[name] = nil
        }
        let newcomers = Set(wanted.keys).subtracting(tunnels.keys)
        tunnels = wanted
        for name in retry where tunnelFailures[name] != nil {
            tunnelFailures[name] = nil
            remoteRetries[name] = nil
        }
        if tunnels.isEmpty {
            await stopMaster()
            return
        }
        // A fatal failure (bad key, changed host key) waits for the user; asking for a tunnel again is that act,
        // but never more often than every 5 s, so scripts cannot turn it into a retry storm.
        if fatal != nil, !retry.isDisjoint(with: tunnels.keys), Date().timeIntervalSince(lastAttempt ?? .distantPast) >= 5 {
            fatal = nil
            backoff.reset()
        }
        if let fatal {
            for name in tunnels.keys.sorted() { note(name, .failed, error: fatal.description, "not retried: \(fatal.advice)") }
            return
        }
        if readyAt != nil {
            let fresh = tunnels.values.sorted(by: { $0.name < $1.name }).filter { added[$0.name] == nil && tunnelFailures[$0.name] == nil }
            for t in fresh { await addForwards(t) }
            await probe(only: Set(fresh.map(\.name)))
        } else if master == nil && !connectPending {
            for name in tunnels.keys.sorted() { note(name, .starting, error: nil, "connecting to \(host)") }
            send(.connect(generation))
            connectPending = true
        } else {
            // Tunnels already waiting keep their last error (why the host is reconnecting).
            for name in newcomers.sorted() { note(name, .starting, error: nil, "waiting for the connection to \(host)") }
        }
    }

    // MARK: the master

    private func connect() async {
        connectPending = false
        guard !tunnels.isEmpty, fatal == nil else { return }
        lastAttempt = Date()
        // fwd names the socket (FwdPaths.controlSocket), so the master starts without a `ssh -G` first.
        let socket = paths.controlSocket(for: host)
        do {
            try FileSystem.makeOwnedDirectory(paths.controlDirectory)
            try FileSystem.makePrivateDirectory(paths.logDirectory)
        } catch {
            failAll(SSHFailure(failureClass: .fatal, evidence: "\(error)", advice: "fix the directory, then `fwd up` again"))
            return
        }
        if let busy = await clearStaleSocket(socket) {
            for name in tunnels.keys.sorted() { note(name, .starting, error: busy.description, "waiting for the socket") }
            await scheduleReconnect(canProbeServer: false)
            return
        }
        let command = SSHCommand.master(ssh: paths.ssh, config: paths.rootSSHConfig, destination: destination,
                                        socket: socket, liveness: liveness)
        let m: ControlMaster
        do {
            m = try await ControlMaster.spawn(command, socket: socket, logPath: logPath)
        } catch {
            failAll(SSHFailure(failureClass: .fatal, evidence: "\(error)", advice: "install the OpenSSH client (apt-get install openssh-client)"))
            return
        }
        generation += 1
        let g = generation
        master = m
        for name in tunnels.keys.sorted() where tunnelFailures[name] == nil {
            note(name, .starting, error: nil, "connecting to \(host) (ssh pid \(m.pid))")
        }
        Task { [weak self] in
            let status = await m.waitExit()
            self?.send(.masterExited(g, status: status))
        }
        Task { [weak self] in
            // Ready when the socket appears: ssh binds a temporary name, listens, and only then links the
            // ControlPath, all after authentication, so the path existing means the master takes requests.
            // (clearStaleSocket removed any older file there.)
            while !Task.isCancelled {
                guard let self, await self.isCurrent(g) else { return }
                if FileSystem.exists(socket) {
                    self.send(.masterReady(g))
                    return
                }
                // Fine while a normal login completes; coarser for one stuck in ConnectTimeout or a slow jump host.
                try? await Task.sleep(for: .milliseconds(Date().timeIntervalSince(m.startedAt) < 1 ? 2 : 25))
            }
        }
    }

    /// What `ssh -G` says for the host: the supervisor's answer, or asked here when none has arrived yet.
    private func resolution() async -> ResolvedHost? {
        if resolved == nil { resolved = try? await SSHResolver.resolve(destination, paths: paths) }
        return resolved
    }

    private func isCurrent(_ g: Int) -> Bool { g == generation && master != nil && readyAt == nil }

    private var logPath: String { "\(paths.logDirectory)/\(host.replacingOccurrences(of: "/", with: "_")).log" }

    /// After a master is SIGKILLed its socket file stays, and a new master would then run without one
    /// (DESIGN.md): remove it. A socket that answers belongs to a live master fwd did not start (a plain
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

    private func masterReady() async {
        guard let m = master else { return }
        readyAt = Date()
        outageStart = nil
        added = [:]
        allocated = [:]
        // Forwards first, bookkeeping after: every millisecond here is on the way to the tunnel being usable.
        for t in tunnels.values.sorted(by: { $0.name < $1.name }) where tunnelFailures[t.name] == nil {
            await addForwards(t)
        }
        try? store.saveMaster(MasterRecord(host: host, pid: Int(m.pid), startTime: ProcessTable.startTime(of: m.pid) ?? 0,
                                           socket: m.socket, startedAt: m.startedAt))
        try? store.log("master", tunnel: nil, host: host, message: "connected to \(host) (ssh pid \(m.pid))")
        await probe(only: nil)
        schedule(.probeTick(generation), after: options.probeInterval)
    }

    private func masterExited(status: Int32) async {
        guard let m = master else { return }
        let uptime = readyAt.map { Date().timeIntervalSince($0) }
        if outageStart == nil { outageStart = Date() }
        master = nil
        readyAt = nil
        added = [:]
        try? store.removeMaster(host: host)
        let failure = SSHFailure.classify(stderr: m.stderr(), status: status)
        try? store.log("master", tunnel: nil, host: host, message: "ssh pid \(m.pid) exited with status \(status): \(failure.evidence)")
        backoff.masterExited(afterUp: uptime)
        guard !tunnels.isEmpty else { return }
        if failure.failureClass == .fatal {
            failAll(failure)
            return
        }
        for name in tunnels.keys.sorted() where tunnelFailures[name] == nil {
            if uptime != nil { try? store.recordRestart(name, reason: failure.evidence) }
            note(name, .starting, error: failure.evidence, "connection lost; reconnecting")
        }
        await scheduleReconnect(canProbeServer: true)
    }

    private func failAll(_ failure: SSHFailure) {
        fatal = failure
        for name in tunnels.keys.sorted() { note(name, .failed, error: failure.description, "not retried until you act: \(failure.advice)") }
    }

    /// Waits out the backoff, but reconnects as soon as the SSH port accepts again after having been seen
    /// closed: a restarted server is back in use within a poll interval instead of a whole backoff step.
    /// While the port does not accept, no ssh is started even once the backoff is over (for up to `cap` more
    /// seconds): one started into a dead path sits in SYN retries until ConnectTimeout and misses the path's return.
    private func scheduleReconnect(canProbeServer: Bool) async {
        connectPending = true
        let delay = backoff.next()
        let patience = backoff.cap
        let g = generation
        let target = canProbeServer ? serverAddress(await resolution()) : nil
        let outage = Date().timeIntervalSince(outageStart ?? Date())
        Task { [weak self] in
            let deadline = Date().addingTimeInterval(delay)
            // Resolved once, as ssh would: a HostName is usually a name, and the poll must not ask DNS every 20 ms.
            // The port counts as open when any of the name's addresses accepts (ssh may use either family).
            let addresses = await offPool { target.map { HostRunner.numericAddresses($0.host) } ?? [] }
            if let target, !addresses.isEmpty {
                // Poll fast while an outage is young (a restarting server), then ease off so a host that is
                // gone for hours does not get fifty connection attempts a second.
                let interval = outage < 10 ? 20 : outage < 60 ? 250 : 1000
                var sawDown = false
                while true {
                    let open = await offPool {
                        addresses.contains { address in
                            (try? ProbeSocket.connect(to: .tcp(host: address, port: target.port),
                                                      until: .now + .milliseconds(200))) != nil
                        }
                    }
                    if open && (sawDown || Date() >= deadline) { break }
                    if !open && Date() >= deadline.addingTimeInterval(patience) { break }
                    guard let self, await self.generation == g else { return }
                    sawDown = sawDown || !open
                    try? await Task.sleep(for: .milliseconds(open ? max(50, interval) : interval))
                }
            } else {
                try? await Task.sleep(for: .seconds(delay))
            }
            self?.send(.connect(g))
        }
    }

    /// Every address `host` resolves to, as numeric strings in getaddrinfo's order; empty when it does not resolve.
    nonisolated static func numericAddresses(_ host: String) -> [String] {
        var hints = addrinfo()
        hints.ai_socktype = SOCK_STREAM_VALUE
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &list) == 0, let first = list else { return [] }
        defer { freeaddrinfo(first) }
        var result: [String] = []
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let current = entry {
            var name = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if getnameinfo(current.pointee.ai_addr, current.pointee.ai_addrlen, &name, socklen_t(name.count), nil, 0, NI_NUMERICHOST) == 0 {
                let address = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                if !result.contains(address) { result.append(address) }
            }
            entry = current.pointee.ai_next
        }
        return result
    }

    /// The SSH server's address when fwd can reach it directly (no ProxyJump/ProxyCommand in the way).
    private func serverAddress(_ resolved: ResolvedHost?) -> (host: String, port: Int)? {
        guard let r = resolved, r.value("proxyjump") == nil || r.value("proxyjump") == "none",
              r.value("proxycommand") == nil || r.value("proxycommand") == "none",
              let hostname = r.value("hostname"), let port = Int(r.value("port") ?? "22") else { return nil }
        return (hostname, port)
    }

    private func stopMaster() async {
        generation += 1
        connectPending = false
        readyAt = nil
        added = [:]
        guard let m = master else { return }
        master = nil
        await m.stop()
        try? store.removeMaster(host: host)
        try? store.log("master", tunnel: nil, host: host, message: "stopped ssh pid \(m.pid): no tunnel on \(host) is wanted")
    }

    // MARK: forwards

    private func addForwards(_ t: Tunnel) async {
        guard let m = master, readyAt != nil else { return }
        for f in t.forwards where !(added[t.name] ?? []).contains(f) {
            let r: CommandResult
            do {
                r = try await CommandRunner.run(SSHCommand.mux(ssh: paths.ssh, socket: m.socket, .forward(f)), timeout: .seconds(10))
            } catch {
                note(t.name, .starting, error: "\(error)", "adding \(f.kind.flag) \(f.sshArgument) failed; retrying")
                return
            }
            if r.status == 0 {
                added[t.name, default: []].append(f)
                if f.kind == .remote, f.listenPort == 0, let port = Int(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) {
                    allocated[f] = port
                    try? store.setAllocatedPort(t.name, spec: f.sshArgument, port: port)
                }
                continue
            }
            let failure = SSHFailure.classify(stderr: r.stderr, status: r.status)
            switch failure.failureClass {
            case .localConflict:
                // Read once into a local: Swift 6.3.1's release optimizer crashes ("Found ownership error") on
                // the two reads of `f.listenPort` this used to make.
                let listenPort = f.listenPort
                let port = listenPort.map { "local port \($0)" } ?? "the local socket"
                let holder = listenPort.flatMap(ProcessTable.holder(ofPort:)).map { " (held by \($0))" } ?? ""
                let message = "\(port) is already in use\(holder): stop that program or change the port in \(t.name)'s \(f.kind.rawValue) forward"
                tunnelFailures[t.name] = message
                await cancelForwards(t.name)
                note(t.name, .failed, error: message, "cannot listen on \(port)")
                return
            case .remoteListener:
                let n = (remoteRetries[t.name] ?? 0) + 1
                remoteRetries[t.name] = n
                if n > options.remoteListenerRetries {
                    let message = "\(failure.evidence) — the server kept refusing; check what listens on that port on the server (or lower its ClientAliveInterval), then `fwd up \(t.name)`"
                    tunnelFailures[t.name] = message
                    await cancelForwards(t.name)
                    note(t.name, .failed, error: message, "gave up after \(n - 1) retries")
                } else {
                    let delay = min(8.0, 0.5 * Double(1 << n))
                    note(t.name, .starting, error: failure.evidence, "server still holds the listener; retry \(n) in \(delay) s")
                    schedule(.retryForwards(generation, tunnel: t.name), after: delay)
                }
                return
            default:
                // The master is probably going away; its exit event decides what happens next.
                note(t.name, .starting, error: failure.evidence, "adding \(f.kind.flag) \(f.sshArgument) failed")
                return
            }
        }
        remoteRetries[t.name] = nil
    }

    private func cancelForwards(_ name: String) async {
        guard let m = master else { return }
        for f in added[name] ?? [] {
            // A failed cancel still exits 0 (DESIGN.md); stderr says "port not forwarded".
            _ = try? await CommandRunner.run(SSHCommand.mux(ssh: paths.ssh, socket: m.socket, .cancel(f)), timeout: .seconds(10))
            allocated[f] = nil
        }
        added[name] = nil
    }

    // MARK: probes

    private var probeContext: (pid: Int32, context: MasterProbeContext)?

    private func probe(only names: Set<String>?) async {
        guard let m = master, readyAt != nil else { return }
        let due = tunnels.values.sorted(by: { $0.name < $1.name }).filter { t in
            tunnelFailures[t.name] == nil && (names?.contains(t.name) ?? true) && added[t.name]?.count == t.forwards.count
        }
        // All probes of the round run at once: a silent remote target holds its probe for the whole timeout,
        // and one after another they would hold up the event loop (and every `fwd up`) for as long.
        let jobs = due.flatMap { t in t.forwards.enumerated().map { (t, $0.offset, $0.element) } }
        let allocated = self.allocated
        // One per live master: its dynamic forwards share one transport round trip.
        if probeContext?.pid != m.pid { probeContext = (m.pid, MasterProbeContext(controlSocket: m.socket)) }
        let master = probeContext!.context
        let results = await withTaskGroup(of: (String, Int, ProbeResult).self) { group in
            for (t, index, f) in jobs {
                let probe = HealthProbe(kind: t.probe(for: f), timeout: 2, socksTarget: t.probeTarget, master: master)
                group.addTask { (t.name, index, await probe.run(f, allocatedPort: allocated[f])) }
            }
            return await group.reduce(into: [String: [Int: ProbeResult]]()) { $0[$1.0, default: [:]][$1.1] = $1.2 }
        }
        for t in due {
            guard tunnels[t.name] == t, let byIndex = results[t.name] else { continue }
            var statuses: [ForwardStatus] = []
            var worst: ProbeOutcome = .up
            for (index, f) in t.forwards.enumerated() {
                guard let result = byIndex[index] else { continue }
                statuses.append(ForwardStatus(kind: f.kind.rawValue, spec: f.sshArgument, allocatedPort: allocated[f],
                                              probe: t.probe(for: f).rawValue, probeMs: result.latencyMs, ok: result.outcome == .up))
                if severity(result.outcome) > severity(worst) { worst = result.outcome }
            }
            try? store.recordProbe(t.name, forwards: statuses)
            switch worst {
            case .up:
                stalled[t.name] = 0
                note(t.name, .up, error: nil, "all \(t.forwards.count) forward(s) pass their probes")
            case .targetDown(let why):
                stalled[t.name] = 0
                note(t.name, .degraded, error: why, "the connection is up but the target does not answer")
            case .listenerDown(let why):
                // Our listener vanished while the master lives (someone cancelled it, or the server lost it):
                // put it back. Cancel first: re-adding a forward the master still lists is a no-op (verified with
                // a -R listener destroyed on the server by `ss -K`: only cancel + forward binds it again).
                note(t.name, .starting, error: why, "a forward is missing; adding it again")
                await cancelForwards(t.name)
                await addForwards(t)
            case .noAnswer(let why):
                let n = (stalled[t.name] ?? 0) + 1
                stalled[t.name] = n
                if n >= options.stalledProbeLimit {
                    stalled[t.name] = 0
                    note(t.name, .starting, error: why, "\(n) probes got no answer: the connection looks stalled; reconnecting")
                    m.terminate()
                } else {
                    note(t.name, .degraded, error: why, "no answer from the target (\(n) of \(options.stalledProbeLimit) before reconnecting)")
                }
            }
        }
    }

    private func severity(_ o: ProbeOutcome) -> Int {
        switch o {
        case .up: 0
        case .targetDown: 1
        case .noAnswer: 2
        case .listenerDown: 3
        }
    }

    // MARK: helpers

    private func note(_ tunnel: String, _ state: TunnelState, error: String?, _ message: String) {
        do {
            try store.transition(tunnel, to: state, pid: master.map { Int($0.pid) }, error: error, message: message)
        } catch {
            FileHandle.standardError.write(Data("fwd: cannot record state of \(tunnel): \(error)\n".utf8))
        }
    }

    private func schedule(_ event: Event, after seconds: Double) {
        Task { [weak self] in
            try? await Task.sleep(for: .seconds(seconds))
            self?.send(event)
        }
    }
}
