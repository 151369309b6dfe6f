import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

public enum ProbeOutcome: Sendable, Equatable {
    /// An application-level round trip succeeded (or, for tcp, the connection stayed open).
    case up
    /// The forward's listener works but the far end refused: the master is fine, the tunnel is degraded.
    case targetDown(String)
    /// Nothing listens: the forward or its master is gone.
    case listenerDown(String)
    /// Connected, but no answer within the timeout: the transport may be stalled.
    case noAnswer(String)
}

public struct ProbeResult: Sendable, Equatable {
    public var outcome: ProbeOutcome
    /// Wall time of the probe.
    public var latencyMs: Double

    public init(outcome: ProbeOutcome, latencyMs: Double) {
        self.outcome = outcome
        self.latencyMs = latencyMs
    }
}

/// Where a `socks` probe asks the proxy to connect, as seen from the SSH server.
public struct SocksTarget: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// The server's own sshd: the one target a -D proxy can always be expected to reach.
    public static let serverSSH = SocksTarget(host: "127.0.0.1", port: 22)

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// Tests one forward end to end (DESIGN.md, "Probes"). A probe never throws, closes every descriptor it
/// opens, and returns within `timeout` plus a little slack.
public struct HealthProbe: Sendable {
    public var kind: ProbeKind
    /// Seconds.
    public var timeout: Double
    /// For socks: what to CONNECT to through the proxy; nil means `SocksTarget.serverSSH`.
    public var socksTarget: SocksTarget?
    /// For remote: the master's control socket.
    public var controlSocket: String?
    public var ssh: String
    /// For tcp: how long a connection must stay open to count as up. ssh closes a -L connection whose target
    /// refused about one server round trip after accepting it, so raise this on slow links.
    public var settleWindow: Double = 0.25

    public init(kind: ProbeKind, timeout: Double = 2, socksTarget: SocksTarget? = nil, controlSocket: String? = nil,
                ssh: String = "ssh") {
        self.kind = kind
        self.timeout = timeout
        self.socksTarget = socksTarget
        self.controlSocket = controlSocket
        self.ssh = ssh
    }

    /// `allocatedPort` replaces a listen port of 0 (-R 0:… after the server picked one).
    ///
    /// A -R forward is always probed through the master (`remote`) whatever `kind` says, because its listener
    /// is on the server; one that listens on a UNIX socket cannot be reached with `ssh -W` and counts as `none`.
    /// A `remote` probe on a -L/-D forward falls back to the default for that forward (tcp, socks).
    public func run(_ forward: ForwardSpec, allocatedPort: Int? = nil) async -> ProbeResult {
        let start = ContinuousClock.now
        let deadline = start + .seconds(max(0, timeout))
        let outcome: ProbeOutcome
        switch effectiveKind(for: forward) {
        case .none:
            return ProbeResult(outcome: .up, latencyMs: 0)
        case .remote:
            outcome = await remote(forward, allocatedPort: allocatedPort, deadline: deadline)
        case let socketKind:
            let address = ProbeAddress(listen: forward.listen, port: allocatedPort)
            let hostHeader = Self.hostHeader(for: forward)
            // Socket probes block in poll(), so each gets a thread of its own: on the cooperative pool they would
            // stall other tasks, and Linux's dispatch pool runs only about one blocking item per core.
            outcome = await offPool {
                self.socketProbe(socketKind, address: address, hostHeader: hostHeader, deadline: deadline)
            }
        }
        return ProbeResult(outcome: outcome, latencyMs: Self.milliseconds(ContinuousClock.now - start))
    }

    func effectiveKind(for forward: ForwardSpec) -> ProbeKind {
        if kind == .none { return .none }
        if forward.kind == .remote {
            if case .unix = forward.listen { return .none }
            return .remote
        }
        if kind == .remote { return ProbeKind.defaultProbe(for: forward.kind, isDynamic: forward.isDynamic) }
        return kind
    }

    private func remote(_ forward: ForwardSpec, allocatedPort: Int?, deadline: ContinuousClock.Instant) async -> ProbeOutcome {
        guard case .tcp(let bind, let listenPort) = forward.listen else { return .up }
        guard let port = listenPort == 0 ? allocatedPort : listenPort, port > 0 else {
            return .noAnswer("the port the server allocated for -R \(forward) is not known yet")
        }
        guard let controlSocket else {
            return .listenerDown("no control socket for -R \(forward): the master is not running")
        }
        let host = ProbeAddress.connectHost(forBind: bind)
        let command = SSHCommand.streamProbe(ssh: ssh, socket: controlSocket, host: host, port: port)
        return await RemoteStreamProbe(command: command, target: ProbeAddress.tcp(host: host, port: port).description,
                                       deadline: deadline).run()
    }

    // MARK: Socket probes (blocking; each runs on a thread of its own)

    private func socketProbe(_ kind: ProbeKind, address: ProbeAddress, hostHeader: String,
                             deadline: ContinuousClock.Instant) -> ProbeOutcome {
        let socket: ProbeSocket
        do {
            socket = try ProbeSocket.connect(to: address, until: deadline)
        } catch {
            switch error {
            case .refused(let reason): return .listenerDown("nothing listens on \(address) (\(reason))")
            case .timedOut: return .noAnswer("connecting to \(address) timed out after \(Self.seconds(timeout))")
            case .failed(let reason): return .listenerDown("cannot connect to \(address): \(reason)")
            }
        }
        switch kind {
        case .banner: return banner(socket, address: address, deadline: deadline)
        case .http: return http(socket, address: address, hostHeader: hostHeader, deadline: deadline)
        case .socks: return socks(socket, address: address, deadline: deadline)
        default: return tcp(socket, address: address, deadline: deadline)
        }
    }

    /// Only a refusal is definite for a bare -L port: ssh accepts, then closes when the remote connect fails.
    private func tcp(_ socket: borrowing ProbeSocket, address: ProbeAddress, deadline: ContinuousClock.Instant) -> ProbeOutcome {
        let window = min(deadline, .now + .seconds(max(0, settleWindow)))
        switch socket.read(upTo: 1, until: window) {
        case .bytes, .timedOut: return .up
        case .closed: return .targetDown(Self.closedAtOnce(address))
        case .failed(let reason): return .targetDown("reading from \(address) failed: \(reason)")
        }
    }

    private func banner(_ socket: borrowing ProbeSocket, address: ProbeAddress, deadline: ContinuousClock.Instant) -> ProbeOutcome {
        switch socket.read(upTo: 256, until: deadline) {
        case .bytes: return .up
        case .closed: return .targetDown(Self.closedAtOnce(address))
        case .timedOut: return .noAnswer("\(address) sent no banner within \(Self.seconds(timeout))")
        case .failed(let reason): return .targetDown("reading from \(address) failed: \(reason)")
        }
    }

    private func http(_ socket: borrowing ProbeSocket, address: ProbeAddress, hostHeader: String,
                      deadline: ContinuousClock.Instant) -> ProbeOutcome {
        let request = "GET / HTTP/1.1\r\nHost: \(hostHeader)\r\nConnection: close\r\nUser-Agent: fwd-probe\r\n\r\n"
        switch socket.write(Array(request.utf8), until: deadline) {
        case .written: break
        case .closed: return .targetDown(Self.closedAtOnce(address))
        case .timedOut: return .noAnswer("\(address) did not take an HTTP request within \(Self.seconds(timeout))")
        case .failed(let reason): return .targetDown("sending an HTTP request to \(address) failed: \(reason)")
        }
        let expected = Array("HTTP/".utf8)
        var received: [UInt8] = []
        while received.count < expected.count {
            switch socket.read(upTo: 512, until: deadline) {
            case .bytes(let more):
                received += more
                let compared = min(received.count, expected.count)
                if received.prefix(compared) != expected.prefix(compared) {
                    return .targetDown("\(address) answered, but not with HTTP: \(Self.excerpt(received))")
                }
            case .closed:
                return .targetDown(received.isEmpty ? Self.closedAtOnce(address)
                                                    : "\(address) closed after a partial answer: \(Self.excerpt(received))")
            case .timedOut:
                return .noAnswer("\(address) sent no HTTP response within \(Self.seconds(timeout))")
            case .failed(let reason):
                return .targetDown("reading from \(address) failed: \(reason)")
            }
        }
        return .up
    }

    /// The greeting proves only the local listener; the CONNECT reply comes after ssh's remote connect succeeded.
    private func socks(_ socket: borrowing ProbeSocket, address: ProbeAddress, deadline: ContinuousClock.Instant) -> ProbeOutcome {
        let target = socksTarget ?? .serverSSH
        switch socket.write([5, 1, 0], until: deadline) {
        case .written: break
        case .closed: return .targetDown("\(address) closed the connection before the SOCKS greeting")
        case .timedOut: return .noAnswer("\(address) did not take a SOCKS greeting within \(Self.seconds(timeout))")
        case .failed(let reason): return .targetDown("sending a SOCKS greeting to \(address) failed: \(reason)")
        }
        let greeting = socket.read(atLeast: 2, until: deadline)
        if greeting.bytes.count >= 2 {
            guard greeting.bytes.prefix(2) == [5, 0] else {
                return .targetDown("\(address) is not a SOCKS5 proxy without authentication (it answered \(Self.hex(greeting.bytes.prefix(2))))")
            }
        } else if let failure = Self.socksFailure(greeting, address: address, step: "the SOCKS greeting", timeout: timeout) {
            return failure
        }
        guard let request = Self.connectRequest(to: target) else {
            return .targetDown("the SOCKS target \(target) is not a valid address or host name")
        }
        switch socket.write(request, until: deadline) {
        case .written: break
        case .closed: return .targetDown("\(address) closed the connection after the SOCKS greeting")
        case .timedOut: return .noAnswer("\(address) did not take a SOCKS CONNECT within \(Self.seconds(timeout))")
        case .failed(let reason): return .targetDown("sending a SOCKS CONNECT to \(address) failed: \(reason)")
        }
        let reply = socket.read(atLeast: 2, until: deadline)
        if reply.bytes.count >= 2 {
            guard reply.bytes[0] == 5 else {
                return .targetDown("\(address) is not a SOCKS5 proxy (it answered \(Self.hex(reply.bytes.prefix(2))))")
            }
            if reply.bytes[1] == 0 { return .up }
            return .targetDown("the SOCKS proxy on \(address) could not connect to \(target): \(Self.socksReplyText(reply.bytes[1]))")
        }
        if case .closed = reply.end {
            // ssh closes the client's connection without a reply when its connect on the server fails.
            return .targetDown("the SOCKS proxy on \(address) closed the connection instead of connecting to \(target): the server could not reach it")
        }
        return Self.socksFailure(reply, address: address, step: "a SOCKS CONNECT to \(target)", timeout: timeout)
            ?? .noAnswer("no SOCKS reply from \(address)")
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

    private static func closedAtOnce(_ address: ProbeAddress) -> String {
        "\(address) accepted the connection and closed it without a byte: the forward's target refused or is unreachable"
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
