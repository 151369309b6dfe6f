import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

package enum ProbeOutcome: Sendable, Equatable {
    /// An application-level round trip succeeded (or, for tcp, the connection stayed open).
    case up
    /// The forward's listener works but the far end refused: the master is fine, the tunnel is degraded.
    case targetDown(String)
    /// Nothing listens: the forward or its master is gone.
    case listenerDown(String)
    /// Connected, but no answer within the timeout: the transport may be stalled.
    case noAnswer(String)
    /// A public forward works on loopback but not where it is shared (sshd kept a -R on its loopback).
    case notShared(Sharing.Gap)
}

package struct ProbeResult: Sendable, Equatable {
    package var outcome: ProbeOutcome
    /// Wall time of the probe.
    package var latencyMs: Double
    /// For a public forward, the places (`host:port`) where the probe reached its listener beyond loopback;
    /// empty when it reached none; nil for a forward that is not shared, or when nothing could be checked.
    package var shared: [String]?

    package init(outcome: ProbeOutcome, latencyMs: Double, shared: [String]? = nil) {
        self.outcome = outcome
        self.latencyMs = latencyMs
        self.shared = shared
    }
}

/// `probe_target`: where a dynamic forward's probe asks the proxy to connect, as the SSH server sees it.
package struct SocksTarget: Sendable, Hashable, CustomStringConvertible {
    package var host: String
    package var port: Int

    package init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    package struct Problem: Error, Equatable, CustomStringConvertible {
        package var description: String
    }

    /// `HOST:PORT`, `[IPv6]:PORT`. The host goes into a SOCKS request (at most 255 bytes) and nowhere else.
    package static func parse(_ text: String) -> Result<SocksTarget, Problem> {
        let host: Substring, port: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                return .failure(Problem(description: "\"\(Validation.printable(text))\" must be HOST:PORT, with an IPv6 address in brackets ([::1]:22)"))
            }
            host = text[text.index(after: text.startIndex)..<close]
            port = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":"), text.firstIndex(of: ":") == colon else {
                return .failure(Problem(description: "\"\(Validation.printable(text))\" must be HOST:PORT (e.g. wiki.lan:80), with an IPv6 address in brackets"))
            }
            host = text[..<colon]
            port = text[text.index(after: colon)...]
        }
        guard let number = Int(port), (1...65535).contains(number) else {
            return .failure(Problem(description: "\"\(Validation.printable(text))\" needs a port from 1 to 65535"))
        }
        let name = String(host)
        if name.isEmpty || name.hasPrefix("-") || name.utf8.count > 255
            || name.utf8.contains(where: { !Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-:%".utf8).contains($0) }) {
            return .failure(Problem(description: "\"\(Validation.printable(text))\" has no valid host name or address before the port"))
        }
        return .success(SocksTarget(host: name, port: number))
    }

    package var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// Tests one forward end to end (docs/architecture.md, "Probes"). A probe never throws, closes every descriptor it
/// opens, starts no process, and returns within `timeout` plus a little slack. All its I/O is non-blocking and
/// waits on the process's one `Reactor` thread.
package struct HealthProbe: Sendable {
    package var kind: ProbeKind
    /// Seconds.
    package var timeout: Double
    /// For socks: what to CONNECT to through the proxy (the tunnel's `probe_target`); nil proves the SOCKS
    /// handshake and the master's transport only.
    package var socksTarget: SocksTarget?
    /// The live master: remote forwards are probed through it, and a dynamic forward's transport round trip.
    package var master: MasterProbeContext?
    /// For tcp: how long a connection must stay open to count as up. ssh closes a -L connection whose target
    /// refused about one server round trip after accepting it, so raise this on slow links.
    package var settleWindow: Double = 0.25
    /// Where a public forward is shared (`Sharing`): for -R, the one host on the server its listener must answer
    /// at besides loopback; for -L and -D, the addresses of this machine it serves. Empty: not shared.
    package var sharedAt: [String] = []
    /// A shared -R listener this master's server was already found keeping on its loopback: it is probed there
    /// only, and passing is `notShared` (sshd does not move a listener while the forward lives).
    package var keptOnLoopback = false

    package init(kind: ProbeKind, timeout: Double = 2, socksTarget: SocksTarget? = nil, master: MasterProbeContext? = nil,
                 sharedAt: [String] = []) {
        self.kind = kind
        self.timeout = timeout
        self.socksTarget = socksTarget
        self.master = master
        self.sharedAt = sharedAt
    }

    /// `allocatedPort` replaces a listen port of 0 (-R 0:… after the server picked one).
    ///
    /// A -R forward is always probed through the master, because its listener is on the server: with `remote`
    /// (its default) or a protocol probe run over the channel. One that listens on a UNIX socket counts as
    /// `none`. A probe that does not fit the forward falls back to the forward's default.
    ///
    /// `listenerConfirmedMs`: the server confirmed this -R forward's listener that long ago in one round trip
    /// (the forward request's answer), so this probe checks only the local target, as the master reaches it.
    package func run(_ forward: ForwardSpec, allocatedPort: Int? = nil, listenerConfirmedMs: Double? = nil) async -> ProbeResult {
        let start = ContinuousClock.now
        let deadline = start + .seconds(max(0, timeout))
        let kind = effectiveKind(for: forward)
        if kind == .none { return ProbeResult(outcome: .up, latencyMs: 0) }
        let hostHeader = Self.hostHeader(for: forward)
        let (outcome, latency): (ProbeOutcome, Duration?)
        if forward.kind == .remote {
            // The server's confirmation does not say where it bound the listener: a shared one is checked there.
            if let ms = listenerConfirmedMs, let target = forward.target, sharedAt.isEmpty {
                let outcome = await confirmedListener(target, kind: kind, hostHeader: hostHeader, deadline: deadline)
                return ProbeResult(outcome: outcome, latencyMs: ms)
            }
            let result = await remote(forward, kind: kind, allocatedPort: allocatedPort, hostHeader: hostHeader, deadline: deadline)
            return ProbeResult(outcome: result.outcome, latencyMs: Self.milliseconds(result.latency ?? (ContinuousClock.now - start)),
                               shared: result.shared)
        } else if kind == .tcp, let master, case .tcp(let host?, let port) = forward.target {
            let address = ProbeAddress(listen: forward.listen, port: allocatedPort)
            (outcome, latency) = await localThroughMaster(master, address: address, target: (host, port), deadline: deadline)
        } else {
            let address = ProbeAddress(listen: forward.listen, port: allocatedPort)
            (outcome, latency) = await local(kind, address: address, hostHeader: hostHeader, deadline: deadline)
        }
        var result = ProbeResult(outcome: outcome, latencyMs: Self.milliseconds(latency ?? (ContinuousClock.now - start)))
        if !sharedAt.isEmpty, case .tcp(let probed, let port) = ProbeAddress(listen: forward.listen, port: allocatedPort) {
            (result.outcome, result.shared) = await localShares(port: port, probed: probed, after: outcome, deadline: deadline)
        }
        return result
    }

    /// A public -L or -D listener that passed its probe is connected to at each other address it is shared on
    /// (the probe went to `probed`: the bind address, or loopback for a wildcard). The first that does not
    /// accept makes the outcome `notShared`.
    private func localShares(port: Int, probed: String, after outcome: ProbeOutcome,
                             deadline: ContinuousClock.Instant) async -> (ProbeOutcome, [String]) {
        guard outcome == .up else { return (outcome, []) }
        var reached: [String] = []
        for host in sharedAt {
            if host != probed, (try? await ProbeSocket.connect(to: .tcp(host: host, port: port), until: deadline)) == nil {
                return (.notShared(.localAddressRefused(address: host, port: port)), reached)
            }
            reached.append(Sharing.place(host, port))
        }
        return (.up, reached)
    }

    func effectiveKind(for forward: ForwardSpec) -> ProbeKind {
        if kind == .none { return .none }
        if forward.kind == .remote, case .unix = forward.listen { return .none }
        return kind.fits(forward) ? kind : ProbeKind.defaultProbe(for: forward.kind, isDynamic: forward.isDynamic)
    }

    // MARK: local and dynamic forwards: a socket to the listener on this machine

    private func local(_ kind: ProbeKind, address: ProbeAddress, hostHeader: String,
                       deadline: ContinuousClock.Instant) async -> (ProbeOutcome, Duration?) {
        if kind == .socks, let master {
            // The handshake proves the listener, the transport round trip the path behind it: both at once.
            async let transport = master.transportRoundTrip(until: deadline)
            let socks = await connected(address, deadline: deadline) { socket in
                await self.socks(socket, address: address, deadline: deadline)
            }
            let round = await transport
            if socks.0 != .up { return socks }
            switch round {
            case .answered(let rtt): return (.up, socksTarget == nil ? rtt : nil)
            case .failed(let outcome): return (outcome, nil)
            }
        }
        return await connected(address, deadline: deadline) { socket in
            switch kind {
            case .tcp: return (await self.tcp(socket, address: address, deadline: deadline), nil)
            case .socks: return await self.socks(socket, address: address, deadline: deadline)
            default:
                let check = ProtocolCheck.check(for: kind, hostHeader: hostHeader) ?? .banner
                return (await self.converse(socket, check, place: address.description, deadline: deadline), nil)
            }
        }
    }

    private func connected(_ address: ProbeAddress, deadline: ContinuousClock.Instant,
                           _ body: (borrowing ProbeSocket) async -> (ProbeOutcome, Duration?)) async -> (ProbeOutcome, Duration?) {
        let socket: ProbeSocket
        do {
            socket = try await ProbeSocket.connect(to: address, until: deadline)
        } catch {
            switch error {
            case .refused(let reason): return (.listenerDown("nothing listens on \(address) (\(reason))"), nil)
            case .timedOut: return (.noAnswer("connecting to \(address) timed out after \(Self.seconds(timeout))"), nil)
            case .failed(let reason): return (.listenerDown("cannot connect to \(address): \(reason)"), nil)
            }
        }
        return await body(socket)
    }

    /// The tcp probe of a -L forward with a live master: ssh's listener accepts (connected, then closed at
    /// once), and the server connects to the forward's target through the same master. Both answers are
    /// definite, so nothing waits out a settle window: MUX_S_SESSION_OPENED means the server's connect
    /// succeeded, MUX_S_FAILURE that it failed. The latency is that round trip.
    private func localThroughMaster(_ master: MasterProbeContext, address: ProbeAddress, target: (host: String, port: Int),
                                    deadline: ContinuousClock.Instant) async -> (ProbeOutcome, Duration?) {
        async let listener = connected(address, deadline: deadline) { _ in (.up, nil) }
        let opened = await master.openChannel(host: target.host, port: target.port, until: deadline)
        let place = SocksTarget(host: target.host, port: target.port).description
        let channel: (ProbeOutcome, Duration?)
        switch consume opened {
        case .opened(_, let rtt): channel = (.up, rtt)
        case .failed(let failure):
            switch failure.failure {
            case .refused(let why): channel = (.targetDown("the server could not connect to the forward's target \(place) (\(why))"), nil)
            case .noMaster(let why): channel = (.listenerDown("the master is gone: \(why)"), nil)
            case .timedOut(let why), .protocolError(let why):
                channel = (.noAnswer("no answer through the master about the forward's target \(place) (\(why))"), nil)
            }
        }
        let local = await listener
        return local.0 == .up ? channel : local
    }

    /// Only a refusal is definite for a bare -L port: ssh accepts, then closes when the remote connect fails.
    private func tcp(_ socket: borrowing ProbeSocket, address: ProbeAddress, deadline: ContinuousClock.Instant) async -> ProbeOutcome {
        let window = min(deadline, .now + .seconds(max(0, settleWindow)))
        switch await socket.read(upTo: 1, until: window) {
        case .bytes, .timedOut: return .up
        case .closed: return .targetDown(Self.closedAtOnce(address.description))
        case .failed(let reason): return .targetDown("reading from \(address) failed: \(reason)")
        }
    }

    /// Sends the check's request, then reads until its verdict. `place` names where the bytes come from.
    func converse(_ socket: borrowing ProbeSocket, _ check: ProtocolCheck, place: String,
                  deadline: ContinuousClock.Instant) async -> ProbeOutcome {
        if let request = check.request {
            switch await socket.write(request, until: deadline) {
            case .written: break
            case .closed: return .targetDown(Self.closedAtOnce(place))
            case .timedOut: return .noAnswer("\(place) did not take a \(check.name) request within \(Self.seconds(timeout))")
            case .failed(let reason): return .targetDown("sending a \(check.name) request to \(place) failed: \(reason)")
            }
        }
        var received: [UInt8] = []
        while true {
            switch await socket.read(upTo: min(4096, ProtocolCheck.receiveLimit - received.count), until: deadline) {
            case .bytes(let more):
                received += more
                switch check.judge(received) {
                case .matches: return .up
                case .needMore:
                    // A service that keeps sending without ever completing an answer is judged on what came, not buffered.
                    guard received.count < ProtocolCheck.receiveLimit else {
                        return .targetDown("\(place) sent \(ProtocolCheck.receiveLimit / 1024) KiB without a complete \(check.name) answer: \(Self.excerpt(received))")
                    }
                    continue
                case .refuses(let why): return .targetDown("\(place): \(why)")
                case .otherProtocol: return .targetDown(Self.notAs(check, place: place, received))
                }
            case .closed:
                if received.isEmpty { return .targetDown(Self.closedAtOnce(place)) }
                return .targetDown("\(place) closed after a partial \(check.name) answer: \(Self.excerpt(received))")
            case .timedOut:
                if received.isEmpty { return .noAnswer("\(place) sent no \(check.name) answer within \(Self.seconds(timeout))") }
                return .noAnswer("\(place) sent only part of a \(check.name) answer within \(Self.seconds(timeout)): \(Self.excerpt(received))")
            case .failed(let reason):
                return .targetDown("reading from \(place) failed: \(reason)")
            }
        }
    }

    /// "127.0.0.1:5432 answered, but not as PostgreSQL (it greets like SSH: "SSH-2.0-OpenSSH_9.2")".
    static func notAs(_ check: ProtocolCheck, place: String, _ received: [UInt8]) -> String {
        let guess = ProtocolCheck.greeters.first { $0.name != check.name && $0.judge(received) == .matches }
        let like = guess.map { "it greets like \($0.name): " } ?? "it sent "
        return "\(place) answered, but not as \(check.name) (\(like)\(excerpt(received)))"
    }

    // MARK: remote forwards: a channel through the master to the server's listener

    /// A shared -R listener (`sharedAt`) is reached at the server's address instead of loopback; when the
    /// server refuses that channel, one to its loopback tells a listener sshd kept there (`GatewayPorts no`)
    /// from one that is gone.
    private func remote(_ forward: ForwardSpec, kind: ProbeKind, allocatedPort: Int?, hostHeader: String,
                        deadline: ContinuousClock.Instant) async -> (outcome: ProbeOutcome, latency: Duration?, shared: [String]?) {
        guard case .tcp(let bind, let listenPort) = forward.listen else { return (.up, nil, nil) }
        guard let port = listenPort == 0 ? allocatedPort : listenPort, port > 0 else {
            return (.noAnswer("the port the server allocated for -R \(forward) is not known yet"), nil, nil)
        }
        guard let master else {
            return (.listenerDown("no control socket for -R \(forward): the master is not running"), nil, nil)
        }
        if keptOnLoopback {
            let kept = await onServerLoopback(master, port: port, kind: kind, hostHeader: hostHeader, deadline: deadline)
            return (kept.outcome ?? kept.failure!.describing(listener: Sharing.place("127.0.0.1", port)), kept.latency, [])
        }
        let shared = sharedAt.first
        let host = shared ?? ProbeAddress.connectHost(forBind: bind)
        let place = ProbeAddress.tcp(host: host, port: port).description
        let opened = await master.openChannel(host: host, port: port, until: deadline)
        switch consume opened {
        case .opened(let socket, let roundTrip):
            let (outcome, latency) = await remoteChannel(socket, roundTrip: roundTrip, place: place, kind: kind, hostHeader: hostHeader, deadline: deadline)
            return (outcome, latency, shared.map { _ in [place] })
        case .failed(let failure):
            guard shared != nil, case .refused = failure.failure else { return (failure.describing(listener: place), nil, shared.map { _ in [] }) }
            let kept = await onServerLoopback(master, port: port, kind: kind, hostHeader: hostHeader, deadline: deadline)
            return (kept.outcome ?? failure.describing(listener: place), kept.latency, [])
        }
    }

    /// A shared -R listener probed on the server's loopback: passing there is `notShared` (sshd kept it
    /// there); a channel the server refuses gives no outcome but its failure.
    private func onServerLoopback(_ master: MasterProbeContext, port: Int, kind: ProbeKind, hostHeader: String,
                                  deadline: ContinuousClock.Instant) async -> (outcome: ProbeOutcome?, latency: Duration?, failure: MasterProbeContext.ChannelFailure?) {
        let opened = await master.openChannel(host: "127.0.0.1", port: port, until: deadline)
        switch consume opened {
        case .failed(let failure): return (nil, nil, failure)
        case .opened(let socket, let roundTrip):
            let (outcome, latency) = await remoteChannel(socket, roundTrip: roundTrip, place: Sharing.place("127.0.0.1", port), kind: kind,
                                                         hostHeader: hostHeader, deadline: deadline)
            return (outcome == .up ? .notShared(.serverLoopbackOnly(port: port)) : outcome, latency, nil)
        }
    }

    /// The rest of a -R probe, on a channel the server opened to its own listener at `place`.
    private func remoteChannel(_ channel: consuming ProbeSocket, roundTrip rtt: Duration, place: String, kind: ProbeKind,
                               hostHeader: String, deadline: ContinuousClock.Instant) async -> (ProbeOutcome, Duration?) {
        if kind != .remote {
            let check = ProtocolCheck.check(for: kind, hostHeader: hostHeader) ?? .banner
            return (await converse(channel, check, place: "the local target behind \(place)", deadline: deadline), nil)
        }
        // The server connected to its own listener; its forwarded channel reaches the master, which connects
        // to the local target. A refusal comes back as EOF about one round trip later (measured:
        // docs/architecture.md, "Probes");
        // a target that accepts and waits for the client sends nothing. So: bytes or no EOF within the grace
        // is up, EOF is targetDown, and the latency is the measured round trip, not the wait.
        let grace = min(deadline, .now + Self.acceptGrace(roundTrip: rtt))
        switch await channel.read(upTo: 1, until: grace) {
        case .bytes, .timedOut: return (.up, rtt)
        case .closed:
            return (.targetDown("the server's listener on \(place) is up, but the forward's local target refused or closed at once"), rtt)
        case .failed(let reason): return (.targetDown("reading the channel to \(place) failed: \(reason)"), rtt)
        }
    }

    /// The first probe of a -R forward the server has just confirmed: its listener is proven by that answer, so
    /// what is left is the local target, which this machine reaches exactly as the master does (same
    /// resolver, every address tried). Nothing goes through the master, so no probe channel is being torn
    /// down while the user's first connection comes in (sshd ≤ 9.x sends without TCP_NODELAY on a
    /// connection with no session, and its packets then wait for the client's delayed ACK). Later rounds
    /// probe end to end through the listener (`remote`). The latency is the server's confirmation.
    private func confirmedListener(_ target: ForwardEndpoint, kind: ProbeKind, hostHeader: String,
                                   deadline: ContinuousClock.Instant) async -> ProbeOutcome {
        let address: ProbeAddress = switch target {
        case .tcp(let host, let port): .tcp(host: host ?? "localhost", port: port)
        case .unix(let path): .unix(path: path)
        }
        let place = "the forward's local target \(address)"
        let socket: ProbeSocket
        do {
            socket = try await ProbeSocket.connect(to: address, until: deadline)
        } catch {
            switch error {
            case .refused(let why): return .targetDown("the server's listener is up, but \(place) refused (\(why))")
            case .timedOut: return .noAnswer("connecting to \(place) timed out after \(Self.seconds(timeout))")
            case .failed(let why): return .targetDown("the server's listener is up, but \(place) cannot be reached: \(why)")
            }
        }
        guard kind != .remote else { return .up }
        let check = ProtocolCheck.check(for: kind, hostHeader: hostHeader) ?? .banner
        return await converse(socket, check, place: place, deadline: deadline)
    }

    /// How long after the channel opened a refusal would have shown. Measured here (OpenSSH 9.2, loopback):
    /// MUX_S_SESSION_OPENED comes 0.23–0.41 ms after the request, and a refused local target's EOF 0.05–0.17 ms
    /// after that (the server's forwarded channel reaching the master, its failed connect, the server's close).
    /// Four round trips plus 15 ms covers a loaded machine or a slow link, and costs a target that waits for
    /// the client (HTTP) no more than that.
    static func acceptGrace(roundTrip: Duration) -> Duration {
        roundTrip * 4 + .milliseconds(15)
    }

    // MARK: SOCKS

    /// The greeting proves only the local listener; the CONNECT reply comes after ssh's remote connect succeeded.
    private func socks(_ socket: borrowing ProbeSocket, address: ProbeAddress, deadline: ContinuousClock.Instant) async -> (ProbeOutcome, Duration?) {
        switch await socket.write([5, 1, 0], until: deadline) {
        case .written: break
        case .closed: return (.targetDown("\(address) closed the connection before the SOCKS greeting"), nil)
        case .timedOut: return (.noAnswer("\(address) did not take a SOCKS greeting within \(Self.seconds(timeout))"), nil)
        case .failed(let reason): return (.targetDown("sending a SOCKS greeting to \(address) failed: \(reason)"), nil)
        }
        let greeting = await socket.read(atLeast: 2, until: deadline)
        if greeting.bytes.count >= 2 {
            guard greeting.bytes.prefix(2) == [5, 0] else {
                return (.targetDown("\(address) is not a SOCKS5 proxy without authentication (it answered \(Self.hex(greeting.bytes.prefix(2))))"), nil)
            }
        } else if let failure = Self.socksFailure(greeting, address: address, step: "the SOCKS greeting", timeout: timeout) {
            return (failure, nil)
        }
        guard let target = socksTarget else { return (.up, nil) }
        guard let request = Self.connectRequest(to: target) else {
            return (.targetDown("the SOCKS target \(target) is not a valid address or host name"), nil)
        }
        let sent = ContinuousClock.now
        switch await socket.write(request, until: deadline) {
        case .written: break
        case .closed: return (.targetDown("\(address) closed the connection after the SOCKS greeting"), nil)
        case .timedOut: return (.noAnswer("\(address) did not take a SOCKS CONNECT within \(Self.seconds(timeout))"), nil)
        case .failed(let reason): return (.targetDown("sending a SOCKS CONNECT to \(address) failed: \(reason)"), nil)
        }
        let reply = await socket.read(atLeast: 2, until: deadline)
        let roundTrip = ContinuousClock.now - sent
        if reply.bytes.count >= 2 {
            guard reply.bytes[0] == 5 else {
                return (.targetDown("\(address) is not a SOCKS5 proxy (it answered \(Self.hex(reply.bytes.prefix(2))))"), nil)
            }
            if reply.bytes[1] == 0 { return (.up, roundTrip) }
            return (.targetDown("the SOCKS proxy on \(address) could not connect to probe_target \(target): \(Self.socksReplyText(reply.bytes[1]))"), nil)
        }
        if case .closed = reply.end {
            // ssh closes the client's connection without a reply when its connect on the server fails.
            return (.targetDown("the SOCKS proxy on \(address) works, but the server could not connect to probe_target \(target)"), nil)
        }
        return (Self.socksFailure(reply, address: address, step: "a SOCKS CONNECT to \(target)", timeout: timeout)
            ?? .noAnswer("no SOCKS reply from \(address)"), nil)
    }

    private static func socksFailure(_ read: (bytes: [UInt8], end: ReadResult?), address: ProbeAddress, step: String,
                                     timeout: Double) -> ProbeOutcome? {
        switch read.end {
        case nil, .bytes: return nil
        case .closed: return .targetDown("\(address) closed the connection after \(step)")
        case .timedOut: return .noAnswer("\(address) did not answer \(step) within \(seconds(timeout))")
        case .failed(let reason): return .targetDown("reading the answer to \(step) from \(address) failed: \(reason)")
        }
    }

    static func connectRequest(to target: SocksTarget) -> [UInt8]? {
        guard (1...65535).contains(target.port) else { return nil }
        let port = [UInt8(target.port >> 8), UInt8(target.port & 0xff)]
        var v4 = in_addr()
        if inet_pton(AF_INET, target.host, &v4) == 1 {
            return [5, 1, 0, 1] + withUnsafeBytes(of: &v4) { Array($0) } + port
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, target.host, &v6) == 1 {
            return [5, 1, 0, 4] + withUnsafeBytes(of: &v6) { Array($0) } + port
        }
        let name = Array(target.host.utf8)
        guard !name.isEmpty, name.count <= 255 else { return nil }
        return [5, 1, 0, 3, UInt8(name.count)] + name + port
    }

    static func socksReplyText(_ code: UInt8) -> String {
        switch code {
        case 1: "general failure"
        case 2: "not allowed by the ruleset"
        case 3: "network unreachable"
        case 4: "host unreachable"
        case 5: "connection refused"
        case 6: "TTL expired"
        case 7: "command not supported"
        case 8: "address type not supported"
        default: "reply code \(code)"
        }
    }

    /// What the server behind a -L forward expects to be called.
    static func hostHeader(for forward: ForwardSpec) -> String {
        guard case .tcp(let host?, let port) = forward.target, !host.isEmpty else { return "localhost" }
        let name = host.contains(":") ? "[\(host)]" : host
        return port == 80 ? name : "\(name):\(port)"
    }

    private static func closedAtOnce(_ place: String) -> String {
        "\(place) accepted the connection and closed it without a byte: the forward's target refused or is unreachable"
    }

    private static func excerpt(_ bytes: [UInt8]) -> String {
        String(reflecting: String(decoding: bytes.prefix(40), as: UTF8.self))
    }

    private static func hex(_ bytes: ArraySlice<UInt8>) -> String {
        bytes.map { byte in
            let digits = String(byte, radix: 16)
            return digits.count == 1 ? "0" + digits : digits
        }.joined(separator: " ")
    }

    static func seconds(_ value: Double) -> String {
        value == value.rounded() ? "\(Int(value)) s" : "\(value) s"
    }

    static func milliseconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) * 1000 + Double(attoseconds) / 1e15
    }
}
