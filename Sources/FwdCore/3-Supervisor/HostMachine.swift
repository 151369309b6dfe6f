/// One SSH host's supervision as a pure state machine: `handle(event, now:)` changes the state and returns the
/// actions to run. It does no I/O, reads no clock and never awaits; `HostRunner` runs the actions and feeds
/// their results back as events, so every transition can be tested alone with an injected clock.
struct HostMachine {
    struct Settings: Sendable, Equatable {
        var probeInterval: Double
        var stalledProbeLimit: Int
        var remoteListenerRetries: Int
        /// A fatal failure is retried at the user's request, but never more often than this, so a script that
        /// repeats `fwd up` cannot turn it into a retry storm against the server.
        var fatalRetryInterval: Double = 5
        /// Failed connection attempts in a row after which the host gives up until the user asks again
        /// (`max_attempts` in `[hosts.X]`); 0: never.
        var maxAttempts = 0

        init(_ options: SupervisorOptions) {
            probeInterval = options.probeInterval
            stalledProbeLimit = options.stalledProbeLimit
            remoteListenerRetries = options.remoteListenerRetries
        }
    }

    /// The host's ControlMaster, as far as the machine knows.
    enum Master: Equatable {
        /// None runs and none is due.
        case none
        /// A reconnect is due once the backoff (and the server's port) allow.
        case waiting
        /// Spawn asked for, or ssh running without its control socket yet (logging in).
        case connecting(pid: Int32?)
        case ready(pid: Int32, since: Double)
        /// Not retried until the user asks again (bad key, changed host key…).
        case failed(SSHFailure)
        /// Logging in needs a person (the last login did, and its master dropped; or a login was cancelled at the
        /// terminal): no attempt until the user asks again (`fwd up`), which then prompts.
        case needsAuth(String)
    }

    enum Event: Sendable, Equatable {
        /// The tunnels wanted on this host. `retry` names tunnels the user just asked for.
        case update([Tunnel], retry: Set<String>, token: Int)
        /// Probe the named tunnels (all when nil) now.
        case check(Set<String>?, token: Int)
        /// The supervisor is stopping: take everything down.
        case stop(token: Int)
        /// The reconnect wait is over.
        case connectDue(generation: Int)
        case spawned(generation: Int, pid: Int32)
        /// No ssh could be started: `failure.failureClass` says whether to wait and retry or give up.
        case spawnFailed(generation: Int, SSHFailure)
        /// The control socket appeared: the master is logged in and takes mux requests.
        case masterReady(generation: Int)
        case masterExited(generation: Int, status: Int32, stderr: String)
        case forwardAdded(generation: Int, tunnel: String, ForwardSpec, MuxOutcome)
        case probeTick(generation: Int)
        case probed(generation: Int, [ProbedTunnel])
        case retryForwards(generation: Int, tunnel: String)
        /// The network changed, the machine woke, or `fwd reconnect` asked (`trigger` says which). `verdict` is
        /// what that means for the live master's path; `mayRestore`, whether it can bring a lost path back.
        /// With a token, the request wants one line saying what was done.
        case pathCheck(PathVerdict, trigger: String, mayRestore: Bool, token: Int?)
        /// A transport round trip through the master came back (`answered`) or timed out.
        case transportChecked(generation: Int, answered: Bool, ms: Int, reason: String)
        // Logins that need a person (issue 11): what became of a question ssh asked while logging in.
        /// The question reached a person's terminal.
        case loginAsked(generation: Int, LoginPromptKind)
        /// No terminal can answer it (no `fwd up` on a terminal is waiting): the executor has refused it.
        case loginImpossible(generation: Int, LoginPromptKind)
        /// The person cancelled at the prompt (Ctrl-C); the executor has ended that ssh.
        case loginCancelled(generation: Int)
    }

    /// What the master said to a forward request (`ssh -O forward`'s request, sent by `MuxClient`).
    enum MuxOutcome: Sendable, Equatable {
        /// `allocatedPort`: the port the server picked for a -R forward of port 0; `ms`, how long the request
        /// took (for -R, the server's answer: one round trip).
        case added(allocatedPort: Int?, ms: Double = 0)
        /// The master refused, with the text ssh prints; `holder` names the program on a local port that is in
        /// use, when known.
        case refused(String, holder: String?)
        /// The request did not reach the master or was not answered.
        case notRun(String)
    }

    struct ProbeJob: Sendable, Equatable {
        var tunnel: String
        var index: Int
        var forward: ForwardSpec
        var kind: ProbeKind
        var allocatedPort: Int?
        /// A -R forward the server confirmed a moment ago, with that request's round trip in ms: its first
        /// probe need not go through the listener again.
        var listenerConfirmedMs: Double? = nil
        /// A public -R forward an earlier probe on this master found kept on the server's loopback.
        var keptOnLoopback = false
    }

    /// One tunnel's probe results, with the definition that was probed (a result for an older one is dropped).
    struct ProbedTunnel: Sendable, Equatable {
        var tunnel: Tunnel
        var results: [Int: ProbeResult]
    }

    let host: String
    let settings: Settings
    private let jitter: @Sendable () -> Double

    private(set) var tunnels: [String: Tunnel] = [:]
    private(set) var master: Master = .none
    /// Bumped for every master and every stop: results of an older master, timer or wait are ignored.
    private(set) var generation = 0
    private(set) var backoff: Backoff
    /// The tunnels' forwards on the master, their probes, and the tunnels that failed on their own.
    private(set) var forwards = ForwardTable()
    private var lastAttempt: Double?
    /// Connection attempts that failed in a row since a master was last ready.
    private(set) var attempts = 0
    /// Why the last attempt failed, kept on the tunnels' rows while the next one runs.
    private var lastFailure: String?
    /// When the reconnect the machine waits for is due.
    private var retryAt: Double?
    /// When the host was lost; nil while a master is up.
    private var outageStart: Double?
    /// Requests waiting for named tunnels to settle (a state recorded after the request).
    private var pending: [Int: Set<String>] = [:]
    /// The last state write per tunnel.
    private var recorded: [String: StoreWrite] = [:]
    /// The last probe results written per tunnel: a round that finds exactly the same (probe = "none", whose
    /// latency is always 0) writes nothing. Any real latency differs from round to round and is written.
    private var recordedProbes: [String: [ForwardStatus]] = [:]
    /// The live master's network path: the check out, the restart fwd ordered, the requests waiting.
    private(set) var path = PathCheck()
    /// What the current login attempt asked a person for (nil: nothing so far).
    private var asked: LoginPromptKind?
    /// What the live (or last) master's login needed a person for; nil when it logged in by itself (agent, key).
    /// A master that needed a person is not logged in again blindly when it drops.
    private(set) var interactive: LoginPromptKind?

    init(host: String, settings: Settings, backoff: Backoff, jitter: @escaping @Sendable () -> Double = { Double.random(in: -1...1) }) {
        self.host = host
        self.settings = settings
        self.backoff = backoff
        self.jitter = jitter
    }

    var isIdle: Bool {
        guard tunnels.isEmpty else { return false }
        switch master {
        case .none, .failed, .needsAuth: return true
        default: return false
        }
    }

    var isReady: Bool {
        if case .ready = master { return true }
        return false
    }

    private var isConnecting: Bool {
        if case .connecting = master { return true }
        return false
    }

    private var pid: Int? {
        switch master {
        case .connecting(let pid): pid.map(Int.init)
        case .ready(let pid, _): Int(pid)
        default: nil
        }
    }

    mutating func handle(_ event: Event, now: Double) -> [HostAction] {
        var out: [HostAction] = []
        switch event {
        case .update(let list, let retry, let token):
            update(list, retry: retry, token: token, now: now, &out)
        case .check(let names, let token):
            pending[token] = []
            if isReady { probe(names, token: token, &out) }
        case .stop(let token):
            for name in tunnels.keys.sorted() { note(name, .down, error: nil, "taken down: the supervisor is stopping", &out) }
            tunnels = [:]
            stopMaster(&out)
            pending[token] = []
        case .connectDue(let g) where g == generation && master == .waiting:
            connect(now: now, &out)
        case .spawned(let g, let pid) where g == generation:
            guard case .connecting = master else { break }
            master = .connecting(pid: pid)
            for name in tunnels.keys.sorted() where !forwards.hasFailed(name) {
                note(name, .starting, error: lastFailure, "connecting to \(host) (ssh pid \(pid))", &out)
            }
        case .spawnFailed(let g, let failure) where g == generation:
            guard case .connecting = master else { break }
            if failure.failureClass == .fatal {
                failAll(failure, &out)
            } else {
                attemptFailed(failure, error: failure.description, pollServer: false, now: now, &out)
            }
        case .masterReady(let g) where g == generation:
            masterReady(now: now, &out)
        case .masterExited(let g, let status, let stderr) where g == generation:
            masterExited(status: status, stderr: stderr, now: now, &out)
        case .forwardAdded(let g, let name, let spec, let outcome) where g == generation:
            forwardAdded(name, spec, outcome, &out)
        case .probeTick(let g) where g == generation && isReady:
            probe(nil, token: nil, &out)
            out.append(.schedule(.probeTick(generation: generation), after: settings.probeInterval))
        case .probed(let g, let results) where g == generation && isReady:
            probed(results, &out)
        case .retryForwards(let g, let name) where g == generation && isReady:
            if tunnels[name] != nil, !forwards.hasFailed(name) { addNext(name, &out) }
        case .pathCheck(let verdict, let trigger, let mayRestore, let token):
            pathCheck(verdict, trigger: trigger, mayRestore: mayRestore, token: token, now: now, &out)
        case .transportChecked(let g, let answered, let ms, let reason) where g == generation:
            transportChecked(answered: answered, ms: ms, reason: reason, &out)
        case .loginAsked(let g, let kind) where g == generation && isConnecting:
            asked = kind
            for name in tunnels.keys.sorted() { note(name, .starting, error: nil, "waiting for \(kind.noun), asked at the terminal", &out) }
        case .loginImpossible(let g, let kind) where g == generation && isConnecting:
            failAll(.noTerminal(for: kind, host: host, tunnels: tunnels.keys.sorted()), &out)
        case .loginCancelled(let g) where g == generation && isConnecting:
            needsAuth(.cancelledAtTerminal, &out)
        default:
            break  // from an older master, timer or wait
        }
        for (token, names) in pending where names.isEmpty {
            pending[token] = nil
            out.append(.finished(token: token))
        }
        return out
    }

    // MARK: desired state

    private mutating func update(_ list: [Tunnel], retry: Set<String>, token: Int, now: Double, _ out: inout [HostAction]) {
        let wanted = Dictionary(uniqueKeysWithValues: list.map { ($0.name, $0) })
        for (name, old) in tunnels.sorted(by: { $0.key < $1.key }) where wanted[name] != old {
            if isReady { cancelForwards(name, &out) }
            if wanted[name] == nil { note(name, .down, error: nil, "taken down", &out) }
            forwards.forgetFailure(name)
        }
        let newcomers = Set(wanted.keys).subtracting(tunnels.keys)
        let previous = tunnels
        tunnels = wanted
        // A tunnel that leaves may be written by others (`fwd down` with no supervisor): it is recorded afresh.
        recorded = recorded.filter { wanted[$0.key] != nil }
        // A tunnel that changed may have other forwards in its row now: its next results are written, whatever they are.
        recordedProbes = recordedProbes.filter { wanted[$0.key] != nil && wanted[$0.key] == previous[$0.key] }
        for name in retry { forwards.retry(name) }
        pending[token] = []
        if tunnels.isEmpty {
            stopMaster(&out)
            return
        }
        // Asking for a tunnel again is the act a fatal failure waits for, within the rate limit.
        if case .failed = master, !retry.isDisjoint(with: tunnels.keys),
           now - (lastAttempt ?? -.infinity) >= settings.fatalRetryInterval {
            master = .none
            backoff.reset()
            attempts = 0
        }
        // No server refused anything: asking again logs in at once (and prompts).
        if case .needsAuth = master, !retry.isDisjoint(with: tunnels.keys) {
            master = .none
            backoff.reset()
        }
        // Asked for again while waiting out a backoff: one attempt now (at most once a second), so `fwd up`
        // reports a fresh outcome instead of the timer's. The backoff keeps growing.
        if case .waiting = master, !retry.isDisjoint(with: tunnels.keys), now - (lastAttempt ?? -.infinity) >= 1 {
            for name in tunnels.keys.sorted() where !forwards.hasFailed(name) {
                out.append(.record(.retrying(tunnel: name, attempts: attempts, retryIn: nil)))
            }
            connect(now: now, &out)
        }
        switch master {
        case .failed(let failure):
            for name in tunnels.keys.sorted() { note(name, .failed, error: failure.description, "not retried: \(failure.advice)", &out) }
        case .needsAuth(let why):
            noteNeedsAuth(why, &out)
        case .ready:
            let fresh = tunnels.keys.sorted().filter(forwards.isUntouched)
            pending[token] = Set(fresh)
            for name in fresh { addNext(name, &out) }
            // Asked for again while live: the request ends with a fresh verdict, not the one recorded before.
            let again = retry.filter { tunnels[$0] != nil && !fresh.contains($0) }
            if !again.isEmpty { probe(again, token: token, &out) }
        case .none:
            for name in tunnels.keys.sorted() { note(name, .starting, error: nil, "connecting to \(host)", &out) }
            connect(now: now, &out)
        case .waiting, .connecting:
            // Newcomers learn why the host is reconnecting, and when it tries next.
            for name in newcomers.sorted() {
                note(name, .starting, error: lastFailure, "waiting for the connection to \(host)", &out)
                if lastFailure != nil, case .waiting = master, let retryAt {
                    out.append(.record(.retrying(tunnel: name, attempts: attempts, retryIn: max(0, retryAt - now))))
                }
            }
        }
    }

    // MARK: the master

    private mutating func connect(now: Double, _ out: inout [HostAction]) {
        guard !tunnels.isEmpty else {
            master = .none
            return
        }
        lastAttempt = now
        generation += 1
        asked = nil
        master = .connecting(pid: nil)
        out.append(.spawnMaster(generation: generation))
    }

    private mutating func masterReady(now: Double, _ out: inout [HostAction]) {
        guard case .connecting(let pid?) = master else { return }
        master = .ready(pid: pid, since: now)
        attempts = 0
        lastFailure = nil
        interactive = asked
        outageStart = nil
        forwards.masterGone()
        // Forwards first, bookkeeping after: every step here is on the way to the tunnel being usable.
        for name in tunnels.keys.sorted() where !forwards.hasFailed(name) { addNext(name, &out) }
        let how = interactive.map { " after \($0.noun) typed at the terminal" } ?? ""
        out.append(.record(.log(.master, tunnel: nil, host: host, message: "connected to \(host) (ssh pid \(pid))\(how)")))
        out.append(.schedule(.probeTick(generation: generation), after: settings.probeInterval))
        out.append(.learnPath(generation: generation))
    }

    private mutating func masterExited(status: Int32, stderr: String, now: Double, _ out: inout [HostAction]) {
        let pid: Int32
        let uptime: Double?
        switch master {
        case .connecting(let p):
            pid = p ?? 0
            uptime = nil
        case .ready(let p, let since):
            pid = p
            uptime = now - since
        default:
            return
        }
        if outageStart == nil { outageStart = now }
        master = .none
        forwards.masterGone()
        let failure = SSHFailure.classify(stderr: stderr, status: status)
        out.append(.record(.log(.master, tunnel: nil, host: host, message: "ssh pid \(pid) exited with status \(status): \(failure.evidence)")))
        backoff.masterExited(afterUp: uptime)
        let ended = path.masterGone()
        let pathReason = ended.restartReason
        answerWaiting(ended.waiting, pathReason.map(PathAnswer.restarted) ?? .masterGone, &out)
        guard !tunnels.isEmpty else { return }
        if let pathReason, interactive == nil {
            // fwd ended this master because its path was gone: reconnect at once, without backoff.
            backoff.reset()
            for name in tunnels.keys.sorted() where !forwards.hasFailed(name) {
                if uptime != nil { out.append(.record(.restart(tunnel: name, reason: pathReason))) }
                note(name, .starting, error: pathReason, "the network path changed; reconnecting", &out)
            }
            connect(now: now, &out)
            return
        }
        if let pathReason {
            // The same, on a master a person logged in: logging in again needs that person.
            needsAuth(.pathChanged(pathReason), &out)
            return
        }
        if failure.failureClass == .fatal, uptime == nil, let kind = asked {
            // ssh's own retries (3 for a password, a code or a passphrase) were spent in this one connection.
            failAll(.typedAnswerRefused(kind, evidence: failure.evidence, tunnels: tunnels.keys.sorted()), &out)
            return
        }
        if failure.failureClass == .fatal {
            failAll(failure, &out)
            return
        }
        if uptime != nil, interactive != nil {
            // Logging in again needs a person: none is asked blindly (no retry loop against the server).
            needsAuth(.connectionLost(evidence: failure.evidence), &out)
            return
        }
        guard uptime != nil else {
            attemptFailed(failure, error: failure.evidence, pollServer: true, now: now, &out)
            return
        }
        lastFailure = failure.evidence
        let delay = scheduleReconnect(pollServer: true, now: now, &out)
        for name in tunnels.keys.sorted() where !forwards.hasFailed(name) {
            out.append(.record(.restart(tunnel: name, reason: failure.evidence)))
            note(name, .starting, error: failure.evidence, "connection lost; reconnecting", &out)
            out.append(.record(.retrying(tunnel: name, attempts: attempts, retryIn: delay)))
        }
    }

    /// A connection attempt failed with a failure worth retrying: the tunnels say why and when the next try
    /// is (each counts as a restart), unless the host has used up its `maxAttempts`.
    private mutating func attemptFailed(_ failure: SSHFailure, error: String, pollServer: Bool, now: Double, _ out: inout [HostAction]) {
        attempts += 1
        if settings.maxAttempts > 0, attempts >= settings.maxAttempts {
            failAll(.gaveUp(failure, attempts: attempts, host: host, tunnels: tunnels.keys.sorted()), &out)
            return
        }
        lastFailure = error
        let delay = scheduleReconnect(pollServer: pollServer, now: now, &out)
        for name in tunnels.keys.sorted() where !forwards.hasFailed(name) {
            out.append(.record(.restart(tunnel: name, reason: failure.evidence)))
            note(name, .starting, error: error, RetryWording.attemptFailed(attempts, retryIn: delay), &out)
            out.append(.record(.retrying(tunnel: name, attempts: attempts, retryIn: delay)))
        }
    }

    private mutating func failAll(_ failure: SSHFailure, _ out: inout [HostAction]) {
        master = .failed(failure)
        for name in tunnels.keys.sorted() {
            note(name, .failed, error: failure.description, "not retried until you act: \(failure.advice)", &out)
        }
    }

    private mutating func needsAuth(_ cause: NeedsAuthCause, _ out: inout [HostAction]) {
        let why = cause.words(host: host)
        master = .needsAuth(why)
        noteNeedsAuth(why, &out)
    }

    private mutating func noteNeedsAuth(_ why: String, _ out: inout [HostAction]) {
        for name in tunnels.keys.sorted() { note(name, .needsAuth, error: NeedsAuthCause.error(why, tunnel: name), "no login attempt until you act", &out) }
    }

    /// The executor waits out the backoff, and with `pollServer` reconnects as soon as the SSH port accepts
    /// again after having been seen closed (`HostRunner.waitToReconnect`). Returns the delay, for the record.
    @discardableResult
    private mutating func scheduleReconnect(pollServer: Bool, now: Double, _ out: inout [HostAction]) -> Double {
        master = .waiting
        let delay = backoff.next(jitter: jitter())
        retryAt = now + delay
        out.append(.waitToReconnect(generation: generation, delay: delay, patience: backoff.cap,
                                    outage: now - (outageStart ?? now), pollServer: pollServer))
        return delay
    }

    private mutating func stopMaster(_ out: inout [HostAction]) {
        generation += 1
        answerWaiting(path.masterGone().waiting, .masterGone, &out)
        forwards.masterGone()
        switch master {
        case .connecting, .ready:
            out.append(.stopMaster(reason: "no tunnel on \(host) is wanted"))
            master = .none
        case .waiting, .needsAuth:
            master = .none
        case .none, .failed:
            break  // a failure is kept while the host has no tunnels, so asking again stays rate-limited
        }
    }

    // MARK: forwards

    /// Sends the tunnel's next forward that is not live yet; once all are, probes the tunnel.
    private mutating func addNext(_ name: String, _ out: inout [HostAction]) {
        guard isReady, let t = tunnels[name] else { return }
        switch forwards.next(for: t) {
        case .inFlight: break
        case .send(let f): out.append(.addForward(generation: generation, tunnel: name, f))
        case .allLive: probe([name], token: nil, &out)
        }
    }

    private mutating func forwardAdded(_ name: String, _ spec: ForwardSpec, _ outcome: MuxOutcome, _ out: inout [HostAction]) {
        guard let sentFor = forwards.answered(name, spec) else { return }
        guard tunnels[name] == sentFor else {
            // The tunnel changed or went while the add was in flight: the forward is live but unwanted.
            if case .added = outcome { out.append(.cancelForward(spec)) }
            if tunnels[name] != nil { addNext(name, &out) }
            return
        }
        switch outcome {
        case .added(let port, let ms):
            if let port = forwards.live(name, spec, ms: ms, allocatedPort: port) {
                out.append(.record(.allocatedPort(tunnel: name, spec: spec.sshArgument, port: port)))
            }
            addNext(name, &out)
        case .notRun(let why):
            note(name, .starting, error: why, "adding \(spec.kind.flag) \(spec.sshArgument) failed; retrying", &out)
            out.append(.schedule(.retryForwards(generation: generation, tunnel: name), after: 2))
        case .refused(let text, let holder):
            let failure = SSHFailure.classify(stderr: text, status: 255)
            switch failure.failureClass {
            case .localConflict:
                // Retried until the port frees (docs/reliability.md, "A port in use"): a bind is the only exact
                // test, and each check costs one request on the local control socket. Its other forwards are
                // cancelled meanwhile: no half tunnel.
                cancelForwards(name, &out)
                forwards.portInUse(name, spec)
                let n = forwards.listenerRefused(name)
                let delay = Backoff.localPort.delay(attempt: n - 1)
                note(name, .starting, error: TunnelFailure.localPortTaken(spec, holder: holder).error(tunnel: name),
                     RetryWording.portCheck(n, retryIn: delay), &out)
                out.append(.record(.retrying(tunnel: name, attempts: n, retryIn: delay)))
                out.append(.schedule(.retryForwards(generation: generation, tunnel: name), after: delay))
            case .remoteListener:
                let n = forwards.listenerRefused(name)
                if n > settings.remoteListenerRetries {
                    fail(name, .remoteListenerHeld(evidence: failure.evidence, retries: n - 1), &out)
                } else {
                    let delay = Backoff.remoteListener.delay(attempt: n - 1)
                    note(name, .starting, error: failure.evidence, "server still holds the listener; retry \(n) in \(delay) s", &out)
                    out.append(.record(.retrying(tunnel: name, attempts: n, retryIn: delay)))
                    out.append(.schedule(.retryForwards(generation: generation, tunnel: name), after: delay))
                }
            case .fatal, .retry:
                // The master is probably going away; its exit decides what happens next.
                note(name, .starting, error: failure.evidence, "adding \(spec.kind.flag) \(spec.sshArgument) failed", &out)
            }
        }
    }

    /// The tunnel fails on its own: its forwards are cancelled and it waits for the user.
    private mutating func fail(_ name: String, _ failure: TunnelFailure, _ out: inout [HostAction]) {
        forwards.fail(name, failure)
        cancelForwards(name, &out)
        note(name, .failed, error: failure.error(tunnel: name), failure.summary, &out)
    }

    private mutating func cancelForwards(_ name: String, _ out: inout [HostAction]) {
        for f in forwards.cancel(name) { out.append(.cancelForward(f)) }
    }

    // MARK: probes

    /// Probes the named tunnels (all when nil) whose forwards are all live. With a `token`, that request also
    /// waits for tunnels whose probe is already under way.
    private mutating func probe(_ names: Set<String>?, token: Int?, _ out: inout [HostAction]) {
        guard isReady else { return }
        let complete = tunnels.values.filter { (names?.contains($0.name) ?? true) && forwards.isComplete($0) }.map(\.name).sorted()
        if let token { pending[token, default: []].formUnion(complete) }
        let due = forwards.startProbes(complete)
        guard !due.isEmpty else { return }
        let jobs = due.flatMap { name in
            let t = tunnels[name]!
            return t.forwards.enumerated().map { index, f in
                ProbeJob(tunnel: name, index: index, forward: f, kind: t.probe(for: f), allocatedPort: forwards.allocated[f],
                         listenerConfirmedMs: forwards.takeConfirmation(f), keptOnLoopback: forwards.keptOnLoopback.contains(f))
            }
        }
        out.append(.probe(generation: generation, jobs, tunnels: due.map { tunnels[$0]! }))
    }

    private mutating func probed(_ results: [ProbedTunnel], _ out: inout [HostAction]) {
        for probed in results {
            let t = probed.tunnel
            forwards.probeDone(t.name)
            guard tunnels[t.name] == t, !forwards.hasFailed(t.name) else { continue }
            var statuses: [ForwardStatus] = []
            var worst: ProbeOutcome = .up
            for (index, f) in t.forwards.enumerated() {
                guard let result = probed.results[index] else { continue }
                statuses.append(ForwardStatus(kind: f.kind, spec: f.sshArgument, allocatedPort: forwards.allocated[f],
                                              probe: t.probe(for: f), probeMs: result.latencyMs, ok: result.outcome == .up,
                                              shared: result.shared))
                if case .notShared(.serverLoopbackOnly) = result.outcome { forwards.keptOnServerLoopback(f) }
                if Self.severity(result.outcome) > Self.severity(worst) { worst = result.outcome }
            }
            if recordedProbes[t.name] != statuses {
                recordedProbes[t.name] = statuses
                out.append(.record(.probe(tunnel: t.name, statuses)))
            }
            // Every round counts for the metrics, whether or not its results changed.
            let probedHere = t.forwards.indices.filter { probed.results[$0] != nil && t.probe(for: t.forwards[$0]) != .none }
            let seconds = probedHere.compactMap { probed.results[$0]?.latencyMs }.map { $0 / 1000 }
            let failures = probedHere.filter { probed.results[$0]?.outcome != .up }.count
            if !seconds.isEmpty { out.append(.record(.tally(TallyKey(.probeSeconds, t.name), seconds))) }
            if failures > 0 { out.append(.record(.tally(TallyKey(.probeFailures, t.name), Array(repeating: 1, count: failures)))) }
            switch worst {
            case .up:
                forwards.probeAnswered(t.name)
                note(t.name, .up, error: nil, t.forwards.count == 1 ? "its forward passes its probe" : "all \(t.forwards.count) forwards pass their probes", &out)
            case .targetDown(let why):
                forwards.probeAnswered(t.name)
                note(t.name, .degraded, error: why, "the connection is up but the target does not answer", &out)
            case .notShared(let gap):
                // Usable through the server, but not by the clients the user shared it with: not up.
                forwards.probeAnswered(t.name)
                note(t.name, .degraded, error: gap.error, gap.summary, &out)
            case .listenerDown(let why):
                // Our listener vanished while the master lives (someone cancelled it, or the server lost it): put
                // it back. Cancel first: re-adding a forward the master still lists is a no-op (a -R listener
                // destroyed on the server by `ss -K` binds again only after cancel + forward).
                note(t.name, .starting, error: why, "a forward is missing; adding it again", &out)
                cancelForwards(t.name, &out)
                addNext(t.name, &out)
            case .noAnswer(let why):
                let (n, stalled) = forwards.probeUnanswered(t.name, limit: settings.stalledProbeLimit)
                if stalled {
                    note(t.name, .starting, error: why, "\(n) probes got no answer: the connection looks stalled; reconnecting", &out)
                    out.append(.terminateMaster)
                } else {
                    note(t.name, .degraded, error: why, "no answer from the target (\(n) of \(settings.stalledProbeLimit) before reconnecting)", &out)
                }
            }
        }
    }

    private static func severity(_ o: ProbeOutcome) -> Int {
        switch o {
        case .up: 0
        case .notShared: 1
        case .targetDown: 2
        case .noAnswer: 3
        case .listenerDown: 4
        }
    }

    // MARK: network paths

    private mutating func pathCheck(_ verdict: PathVerdict, trigger: String, mayRestore: Bool, token: Int?, now: Double,
                                    _ out: inout [HostAction]) {
        func reply(_ answer: PathAnswer) { if let token { out.append(.answered(token: token, answer.line(host: host))) } }
        if tunnels.isEmpty { return reply(.noTunnelWanted) }
        switch master {
        case .failed(let failure):
            reply(.waitingForYou(advice: failure.advice))
        case .needsAuth:
            // No login without a person: a network event never starts one.
            reply(.needsYou)
        case .waiting:
            // Waiting out a backoff: a change that may have brought the path back is worth an attempt now.
            if mayRestore {
                backoff.reset()
                out.append(.record(.log(.network, tunnel: nil, host: host, message: "\(trigger): reconnecting to \(host) now")))
                connect(now: now, &out)
            }
            reply(.reconnecting)
        case .none:
            reply(.reconnecting)
        case .connecting:
            reply(.connecting)
        case .ready(let pid, _):
            if path.isRestarting { return reply(.restarting) }
            switch verdict {
            case .ignore:
                reply(.unchanged)
            case .restart(let reason):
                path.wait(token)
                restartMaster(pid: pid, reason, &out)
            case .check(let reason):
                path.wait(token)
                if let due = path.check(reason) { out.append(.checkTransport(generation: generation, reason: due)) }
            }
        }
    }

    private mutating func transportChecked(answered: Bool, ms: Int, reason: String, _ out: inout [HostAction]) {
        path.returned()
        guard case .ready(let pid, _) = master, !path.isRestarting else { return }
        guard answered else {
            restartMaster(pid: pid, "\(reason); no answer through the master within \(ms) ms", &out)
            return
        }
        out.append(.record(.log(.network, tunnel: nil, host: host,
                                message: "\(reason): checked \(host), the server answers through the master (\(ms) ms)")))
        let (waiting, next) = path.serverAnswered()
        answerWaiting(waiting, .serverAnswers(ms: ms), &out)
        if let next { out.append(.checkTransport(generation: generation, reason: next)) }
    }

    /// Ends a master whose path is gone; its exit then reconnects at once, without backoff.
    private mutating func restartMaster(pid: Int32, _ reason: String, _ out: inout [HostAction]) {
        path.restart(reason)
        out.append(.record(.log(.network, tunnel: nil, host: host, message: "\(reason): restarting the master of \(host) (ssh pid \(pid))")))
        out.append(.terminateMaster)
    }

    /// The `pathCheck` requests that waited for an outcome get their line.
    private func answerWaiting(_ tokens: [Int], _ answer: PathAnswer, _ out: inout [HostAction]) {
        for token in tokens { out.append(.answered(token: token, answer.line(host: host))) }
    }

    // MARK: helpers

    /// Records the tunnel's state, unless it is exactly what was recorded last (a probe round of a tunnel that
    /// stays up writes nothing); a request waiting on the tunnel is settled either way.
    private mutating func note(_ name: String, _ state: TunnelState, error: String?, _ message: String, _ out: inout [HostAction]) {
        let write = StoreWrite.state(tunnel: name, state, pid: pid, error: error, message: message)
        if recorded[name] != write {
            recorded[name] = write
            out.append(.record(write))
        }
        for token in pending.keys { pending[token]?.remove(name) }
    }
}

/// What `HostMachine` asks its executor to do.
enum HostAction: Sendable, Equatable {
    /// Start `ssh -N -M` (after removing a stale socket); reports `spawned` or `spawnFailed`, later
    /// `masterReady` and `masterExited`.
    case spawnMaster(generation: Int)
    /// End the current master and wait for it.
    case stopMaster(reason: String)
    /// SIGTERM the current master (stalled transport); its exit is reported as usual.
    case terminateMaster
    /// `ssh -O forward`; reports `forwardAdded`.
    case addForward(generation: Int, tunnel: String, ForwardSpec)
    /// `ssh -O cancel` with the spec exactly as added.
    case cancelForward(ForwardSpec)
    /// Runs the probes at once; reports `probed` with one entry per tunnel.
    case probe(generation: Int, [HostMachine.ProbeJob], tunnels: [Tunnel])
    /// Waits `delay` s; with `pollServer`, reconnects early when the SSH port comes back, and holds off (up to
    /// `patience` s more) while it does not accept. Reports `connectDue`.
    case waitToReconnect(generation: Int, delay: Double, patience: Double, outage: Double, pollServer: Bool)
    case schedule(HostMachine.Event, after: Double)
    case record(StoreWrite)
    /// A request (update, check, stop) has taken effect.
    case finished(token: Int)
    /// Learn the new master's network path (its TCP connection, interface, server address) for `pathCheck`.
    case learnPath(generation: Int)
    /// A transport round trip through the master; reports `transportChecked`.
    case checkTransport(generation: Int, reason: String)
    /// The line a `pathCheck` request gets.
    case answered(token: Int, String)
}
