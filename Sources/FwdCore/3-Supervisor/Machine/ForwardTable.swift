/// One host's per-tunnel bookkeeping for `HostMachine`: the forwards live on the current master and the one in
/// flight, what the server said about -R listeners, which probes are out, and what outlives a master (tunnels
/// that failed on their own, the -R and stalled-probe counts). The machine decides; the table keeps these lists
/// consistent with each other (a cancelled forward takes its allocated port and its confirmation with it).
struct ForwardTable {
    /// What to do next for a tunnel's forwards (`next(for:)`).
    enum Next: Equatable {
        /// A forward request is out already: its answer comes first.
        case inFlight
        /// Send this forward (now recorded as in flight).
        case send(ForwardSpec)
        /// Every forward is live.
        case allLive
    }

    /// Forwards live on the current master, per tunnel, as sent (a cancel must repeat them exactly).
    private(set) var added: [String: [ForwardSpec]] = [:]
    /// The `-O forward` in flight per tunnel, with the definition it was sent for.
    private var adding: [String: InFlight] = [:]
    /// The ports the server picked for -R forwards of port 0.
    private(set) var allocated: [ForwardSpec: Int] = [:]
    /// -R forwards added since their last probe, with the round trip of the server's confirmation in ms.
    private var confirmed: [ForwardSpec: Double] = [:]
    /// Tunnels whose probe is out.
    private var probing: Set<String> = []
    /// Tunnels that failed on their own (port taken, server listener held) while the host is fine.
    private(set) var failures: [String: TunnelFailure] = [:]
    /// Refusals of a tunnel's listeners (the server's -R, or a local port in use) since the tunnel was last complete.
    private var remoteRetries: [String: Int] = [:]
    /// The forward whose local port was in use, per tunnel: the next check sends it first, so the tunnel's other
    /// forwards do not go up and down with each check.
    private var blocked: [String: ForwardSpec] = [:]
    /// Probe rounds in a row without an answer, per tunnel.
    private(set) var stalled: [String: Int] = [:]
    /// Public -R forwards whose listener the server keeps on its loopback, as a probe on this master found. sshd
    /// binds a listener once, by the `GatewayPorts` of the session, so later probes of the same forward go to
    /// loopback only: a refused channel to the server's address each round would only fill its log.
    private(set) var keptOnLoopback: Set<ForwardSpec> = []

    private struct InFlight {
        var spec: ForwardSpec
        var tunnel: Tunnel
    }

    // MARK: the master

    /// The master is gone (exited, stopped) or a new one is up: nothing is live on it or in flight, and no probe is out.
    /// Failures and counts stay.
    mutating func masterGone() {
        added = [:]
        adding = [:]
        allocated = [:]
        confirmed = [:]
        probing = []
        keptOnLoopback = []
    }

    // MARK: forwards

    /// Whether the tunnel has nothing live, nothing in flight and no failure: a new master's or update's to add.
    func isUntouched(_ name: String) -> Bool {
        added[name] == nil && adding[name] == nil && failures[name] == nil
    }

    /// Whether all of the tunnel's forwards are live and it has not failed: it can be probed.
    func isComplete(_ tunnel: Tunnel) -> Bool {
        failures[tunnel.name] == nil && added[tunnel.name]?.count == tunnel.forwards.count
    }

    /// The tunnel's next forward that is not live, recorded as in flight; once all are live, the tunnel's -R
    /// refusals are forgotten.
    mutating func next(for tunnel: Tunnel) -> Next {
        guard adding[tunnel.name] == nil else { return .inFlight }
        let live = added[tunnel.name] ?? []
        let first = blocked[tunnel.name].flatMap { tunnel.forwards.contains($0) && !live.contains($0) ? $0 : nil }
        guard let f = first ?? tunnel.forwards.first(where: { !live.contains($0) }) else {
            remoteRetries[tunnel.name] = nil
            return .allLive
        }
        adding[tunnel.name] = InFlight(spec: f, tunnel: tunnel)
        return .send(f)
    }

    /// The answer to the tunnel's request for `spec` came: it is no longer in flight. Returns the definition
    /// the request was sent for, or nil when no such request is out (an answer for an older master).
    mutating func answered(_ name: String, _ spec: ForwardSpec) -> Tunnel? {
        guard let sent = adding[name], sent.spec == spec else { return nil }
        adding[name] = nil
        return sent.tunnel
    }

    /// The master added `spec` for the tunnel, `ms` after it was asked. A -R forward's confirmation is kept for
    /// its first probe; for a -R of port 0, the port the server picked is kept and returned (to be recorded).
    mutating func live(_ name: String, _ spec: ForwardSpec, ms: Double, allocatedPort: Int?) -> Int? {
        added[name, default: []].append(spec)
        if blocked[name] == spec { blocked[name] = nil }
        guard spec.kind == .remote else { return nil }
        confirmed[spec] = ms
        guard spec.listenPort == 0, let allocatedPort else { return nil }
        allocated[spec] = allocatedPort
        return allocatedPort
    }

    /// Takes the tunnel's live forwards out of the table, with their ports and confirmations, and returns them
    /// as sent: each is to be cancelled on the master.
    mutating func cancel(_ name: String) -> [ForwardSpec] {
        let live = added.removeValue(forKey: name) ?? []
        for f in live {
            allocated[f] = nil
            confirmed[f] = nil
            keptOnLoopback.remove(f)
        }
        return live
    }

    /// The server refused the tunnel's -R listener, or its local port was in use, once more: returns how many
    /// times in a row (from 1).
    mutating func listenerRefused(_ name: String) -> Int {
        let n = (remoteRetries[name] ?? 0) + 1
        remoteRetries[name] = n
        return n
    }

    /// The forward's local port is in use: it goes first at the next check.
    mutating func portInUse(_ name: String, _ spec: ForwardSpec) {
        blocked[name] = spec
    }

    // MARK: failures

    mutating func fail(_ name: String, _ failure: TunnelFailure) {
        failures[name] = failure
    }

    func hasFailed(_ name: String) -> Bool { failures[name] != nil }

    /// The tunnel's definition changed or it went: its failure was about the old one.
    mutating func forgetFailure(_ name: String) {
        failures[name] = nil
    }

    /// The user asked for a failed tunnel again: it starts over, and so does its -R count. A tunnel that has not
    /// failed keeps its count.
    mutating func retry(_ name: String) {
        guard failures[name] != nil else { return }
        failures[name] = nil
        remoteRetries[name] = nil
    }

    // MARK: probes

    /// Marks the named tunnels' probes as out; returns those that had none out (the ones to probe now).
    mutating func startProbes(_ names: [String]) -> [String] {
        let due = names.filter { !probing.contains($0) }
        probing.formUnion(due)
        return due
    }

    mutating func probeDone(_ name: String) {
        probing.remove(name)
    }

    /// The -R forward's confirmation, once: its first probe need not go through the listener.
    mutating func takeConfirmation(_ spec: ForwardSpec) -> Double? {
        confirmed.removeValue(forKey: spec)
    }

    /// A probe found the forward's listener kept on the server's loopback: so it stays while the forward lives.
    mutating func keptOnServerLoopback(_ spec: ForwardSpec) {
        keptOnLoopback.insert(spec)
    }

    /// A probe round got an answer (the target's or its refusal): the tunnel is not stalled.
    mutating func probeAnswered(_ name: String) {
        stalled[name] = 0
    }

    /// A probe round got no answer: returns how many in a row, and whether that reaches `limit` (the connection
    /// looks stalled; the count then starts over).
    mutating func probeUnanswered(_ name: String, limit: Int) -> (count: Int, stalled: Bool) {
        let n = (stalled[name] ?? 0) + 1
        let reached = n >= limit
        stalled[name] = reached ? 0 : n
        return (n, reached)
    }
}
