import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A client of OpenSSH's ControlMaster protocol (PROTOCOL.mux, version 4), so a probe reaches the server
/// through the live master without starting an ssh process. One value is one control connection; the master
/// serves at most one stdio forward per connection, so each forward gets a connection of its own.
///
/// Verified against OpenSSH 9.2 (mux.c): the master answers MUX_C_NEW_STDIO_FWD only once the server has
/// answered the channel open, with MUX_S_SESSION_OPENED (the server connected to the target) or MUX_S_FAILURE
/// "Session open refused by peer". Either reply is a full round trip over the SSH transport.
struct MuxClient: ~Copyable {
    private let socket: ProbeSocket
    private var nextRequest: UInt32 = 1
    let path: String

    enum Failure: Error, Equatable, CustomStringConvertible {
        /// No socket file, or nothing accepts on it: the master is gone.
        case noMaster(String)
        case timedOut(String)
        /// The master answered, but not with what the protocol says.
        case protocolError(String)
        /// The master refused the request (MUX_S_FAILURE / MUX_S_PERMISSION_DENIED) with this reason.
        case refused(String)

        var description: String {
            switch self {
            case .noMaster(let s), .timedOut(let s), .protocolError(let s), .refused(let s): s
            }
        }
    }

    enum Message {
        static let hello: UInt32 = 0x0000_0001
        static let aliveCheck: UInt32 = 0x1000_0004
        static let openForward: UInt32 = 0x1000_0006
        static let closeForward: UInt32 = 0x1000_0007
        static let newStdioForward: UInt32 = 0x1000_0008
        static let proxy: UInt32 = 0x1000_000f
        static let ok: UInt32 = 0x8000_0001
        static let permissionDenied: UInt32 = 0x8000_0002
        static let failure: UInt32 = 0x8000_0003
        static let alive: UInt32 = 0x8000_0005
        static let sessionOpened: UInt32 = 0x8000_0006
        static let remotePort: UInt32 = 0x8000_0007
        static let proxyStarted: UInt32 = 0x8000_000f
    }

    static let version: UInt32 = 4

    private init(socket: consuming ProbeSocket, path: String) {
        self.socket = socket
        self.path = path
    }

    /// Connects to the master's control socket and exchanges hellos.
    static func connect(_ path: String, until deadline: ContinuousClock.Instant) async throws(Failure) -> MuxClient {
        let socket: ProbeSocket
        do {
            socket = try await ProbeSocket.connect(to: .unix(path: path), until: deadline)
        } catch {
            switch error {
            case .refused(let why): throw .noMaster("no master answers on \(path) (\(why))")
            case .timedOut: throw .timedOut("the master on \(path) did not accept in time")
            case .failed(let why): throw .noMaster("cannot reach the master on \(path): \(why)")
            }
        }
        let client = MuxClient(socket: socket, path: path)
        try await client.send(Self.packet(Message.hello, [.u32(version)]), until: deadline)
        var reader = try await client.receive(until: deadline)
        guard try reader.u32() == Message.hello else { throw .protocolError("\(path) did not greet with MUX_MSG_HELLO") }
        let theirs = try reader.u32()
        guard theirs == version else { throw .protocolError("the master on \(path) speaks mux protocol \(theirs), not \(version)") }
        return client
    }

    /// MUX_C_ALIVE_CHECK: the master process answers by itself (no server round trip) with its pid.
    mutating func aliveCheck(until deadline: ContinuousClock.Instant) async throws(Failure) -> Int32 {
        let id = takeRequestID()
        try await send(Self.packet(Message.aliveCheck, [.u32(id)]), until: deadline)
        var reader = try await receive(until: deadline)
        let type = try reader.u32()
        guard type == Message.alive, try reader.u32() == id else { throw .protocolError("unexpected answer 0x\(String(type, radix: 16)) to an alive check") }
        return Int32(bitPattern: try reader.u32())
    }

    /// MUX_C_NEW_STDIO_FWD: asks the server to connect to `host:port` and returns this end of the channel.
    /// Throws `.refused` when the server answered that it could not (the master's text, e.g. "Session open
    /// refused by peer"); that answer is still a transport round trip.
    consuming func openStdioForward(host: String, port: Int, until deadline: ContinuousClock.Instant) async throws(Failure) -> ProbeSocket {
        // Two pairs, not one: the master closes its write end when the server sends EOF, and that must show
        // here at once even while its read end stays open.
        let toMaster = try Self.socketPair()
        let fromMaster = try Self.socketPair()
        let masterIn = toMaster.first, oursOut = toMaster.second
        let masterOut = fromMaster.first, oursIn = fromMaster.second
        // The master ends the channel when its control connection closes (it serves `ssh -W`, which stays
        // connected): the channel keeps a duplicate of that connection.
        let duplicate = fcntl(socket.fd, F_DUPFD_CLOEXEC, 0)
        guard duplicate >= 0 else { throw .protocolError("dup(): \(Posix.errorText(errno))") }
        let channel = ProbeSocket(reading: oursIn, writing: oursOut, holding: Descriptor(duplicate))
        let id = takeRequestID()
        try await send(Self.packet(Message.newStdioForward, [.u32(id), .string(""), .string(host), .u32(UInt32(port))]), until: deadline)
        // stdin then stdout, one descriptor per message, as ssh itself sends them (mm_send_fd).
        try await sendDescriptor(masterIn.raw, until: deadline)
        try await sendDescriptor(masterOut.raw, until: deadline)
        // The master holds its own copies now; ours close when this scope ends.
        var reader = try await receive(until: deadline)
        let type = try reader.u32()
        guard try reader.u32() == id else { throw .protocolError("the master answered another request") }
        switch type {
        case Message.sessionOpened:
            return channel
        case Message.failure, Message.permissionDenied:
            throw .refused((try? reader.string()) ?? "no reason given")
        default:
            throw .protocolError("unexpected answer 0x\(String(type, radix: 16)) to a stdio forward")
        }
    }

    /// The channel open no server can grant: a connect to port 0. The server answers "open failed" after
    /// parsing the request, so the answer is one round trip over the SSH transport and touches nothing on the
    /// server's network. A hung transport gives no answer at all.
    static let unreachable = (host: "127.0.0.1", port: 0)

    /// One transport round trip through the master at `socket`: a stdio forward to `unreachable`, whose refusal
    /// is the server's answer. Returns the time from request to answer; a failure says why there was none.
    /// Each one costs a line in the server's log (sshd logs the failed connect at level ERROR).
    static func transportRoundTrip(_ socket: String, until deadline: ContinuousClock.Instant) async -> Result<Duration, Failure> {
        var sent = ContinuousClock.now
        do {
            let client = try await connect(socket, until: deadline)
            sent = .now
            _ = try await client.openStdioForward(host: unreachable.host, port: unreachable.port, until: deadline)
            return .success(.now - sent)  // no server grants it; a master that says it did still answered
        } catch .refused {
            return .success(.now - sent)
        } catch {
            return .failure(error)
        }
    }

    /// When a new master is sent `nudge`s, counted from its control socket appearing (its login).
    static let loginNudges: [Duration] = [.milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(20)]

    /// Sends the server an SSH2_MSG_IGNORE at each of `times` (from now) through one proxy connection to the
    /// master at `socket`, and ends quietly at the first failure (a master gone, one too old for proxy mode).
    ///
    /// Why, right after a master's login: as its session starts, sshd sends a host-key notice
    /// (`hostkeys-00@openssh.com`) that the client does not answer. A request that leaves the client before
    /// the notice arrives (fwd's first -R forward request, transport round trip or probe all leave at once)
    /// cannot acknowledge it, and on a connection without a session sshd keeps Nagle on: it holds the answer
    /// until the client's delayed ACK, 40 ms later, and each answer held that way can hold the next one too.
    /// An ignore message is a client packet that carries the acknowledgement, and the server answers it with
    /// nothing, so it releases what waits and leaves nothing new. (Raw `ssh -N` escapes by chance: it sends
    /// `no-more-sessions@openssh.com`, which needs no answer, just after its login. A master cannot send
    /// that: it would refuse the sessions of everyone sharing it.)
    static func nudge(_ socket: String, at times: [Duration]) async {
        let start = ContinuousClock.now
        var proxy: MuxClient?
        for time in times {
            guard (try? await Task.sleep(until: start + time)) != nil else { return }
            if proxy == nil {
                proxy = try? await connect(socket, until: .now + .seconds(1))
                guard (try? await proxy?.startProxy(until: .now + .seconds(1))) != nil else { return }
            }
            guard (try? await proxy?.ignore(until: .now + .seconds(1))) != nil else { return }
        }
    }

    /// MUX_C_PROXY (PROTOCOL.mux): once the master has answered, this connection carries SSH connection
    /// messages, which the master passes on to the server. fwd sends only `ignore` through it.
    mutating func startProxy(until deadline: ContinuousClock.Instant) async throws(Failure) {
        let id = takeRequestID()
        try await send(Self.packet(Message.proxy, [.u32(id)]), until: deadline)
        var reader = try await receive(until: deadline)
        let answer = try reader.u32()
        guard try reader.u32() == id else { throw .protocolError("the master answered another request") }
        switch answer {
        case Message.proxyStarted: return
        case Message.failure, Message.permissionDenied: throw .refused((try? reader.string()) ?? "no reason given")
        default: throw .protocolError("unexpected answer 0x\(String(answer, radix: 16)) to a proxy request")
        }
    }

    /// After `startProxy`: one SSH2_MSG_IGNORE with no data, the message a server reads and drops without an
    /// answer (RFC 4253 §11.2). The master passes it on unchanged (channels.c `channel_proxy_downstream`
    /// translates channel numbers only), in the proxy's framing: length, padding length 0, type, payload.
    func ignore(until deadline: ContinuousClock.Instant) async throws(Failure) {
        try await send(Self.ignoreMessage, until: deadline)
    }

    static let ignoreMessage: [UInt8] = bigEndian(6) + [0, 2] + bigEndian(0)

    /// MUX_C_OPEN_FWD (or MUX_C_CLOSE_FWD with `cancel`): the request `ssh -O forward|cancel` sends for
    /// `spec.sshArgument`, field for field (mux.c `mux_client_forward` after readconf.c `parse_forward`), so the
    /// master treats it exactly as that command. Returns the port the server allocated for a -R forward of
    /// port 0. Throws `.refused` with the text ssh itself prints ("forwarding request failed: Port forwarding
    /// failed", "… remote port forwarding failed for listen port 8080"), which `SSHFailure` classifies.
    /// A -R request is answered once the server has answered (one round trip); -L and -D at once.
    mutating func forward(_ spec: ForwardSpec, cancel: Bool = false, until deadline: ContinuousClock.Instant) async throws(Failure) -> Int? {
        let id = takeRequestID()
        try await send(Self.forwardRequest(spec, id: id, cancel: cancel), until: deadline)
        var reader = try await receive(until: deadline)
        let answer = try reader.u32()
        guard try reader.u32() == id else { throw .protocolError("the master answered another request") }
        switch answer {
        case Message.ok: return nil
        case Message.remotePort where !cancel: return Int(try reader.u32())
        case Message.failure: throw .refused("forwarding request failed: \((try? reader.string()) ?? "no reason given")")
        case Message.permissionDenied: throw .refused("Master refused forwarding request: \((try? reader.string()) ?? "no reason given")")
        default: throw .protocolError("unexpected answer 0x\(String(answer, radix: 16)) to a forward request")
        }
    }

    static func forwardRequest(_ spec: ForwardSpec, id: UInt32, cancel: Bool) -> [UInt8] {
        let (listenHost, listenPort) = muxFields(spec.listen, isListen: true)
        let (connectHost, connectPort) = spec.target.map { muxFields($0, isListen: false) } ?? ("socks", 0)
        let type: UInt32 = switch spec.kind {
        case .local: 1
        case .remote: 2
        case .dynamic: 3
        }
        return packet(cancel ? Message.closeForward : Message.openForward,
                      [.u32(id), .u32(type), .string(listenHost), .u32(listenPort), .string(connectHost), .u32(connectPort)])
    }

    /// One endpoint as ssh sends it: a UNIX path with the port PORT_STREAMLOCAL (-2); a TCP listener with its
    /// bind address (127.0.0.1 when none was written, as `sshArgument` does; an empty one means every address,
    /// which ssh sends as "*").
    private static func muxFields(_ endpoint: ForwardEndpoint, isListen: Bool) -> (String, UInt32) {
        switch endpoint {
        case .unix(let path): return (path, UInt32(bitPattern: -2))
        case .tcp(let host, let port):
            guard isListen else { return (host ?? "", UInt32(port)) }
            let bind = host ?? "127.0.0.1"
            return (bind.isEmpty ? "*" : bind, UInt32(port))
        }
    }

    private mutating func takeRequestID() -> UInt32 {
        defer { nextRequest &+= 1 }
        return nextRequest
    }

    // MARK: wire format (uint32 length, then the body; SSH encoding of uint32 and string)

    enum Field {
        case u32(UInt32)
        case string(String)
    }

    static func packet(_ type: UInt32, _ fields: [Field]) -> [UInt8] {
        var body = bigEndian(type)
        for field in fields {
            switch field {
            case .u32(let value): body += bigEndian(value)
            case .string(let text):
                let bytes = Array(text.utf8)
                body += bigEndian(UInt32(bytes.count)) + bytes
            }
        }
        return bigEndian(UInt32(body.count)) + body
    }

    static func bigEndian(_ value: UInt32) -> [UInt8] {
        [UInt8(value >> 24), UInt8((value >> 16) & 0xff), UInt8((value >> 8) & 0xff), UInt8(value & 0xff)]
    }

    struct Reader {
        var bytes: [UInt8]
        var offset = 0

        mutating func u32() throws(Failure) -> UInt32 {
            guard offset + 4 <= bytes.count else { throw .protocolError("a mux message ended early") }
            defer { offset += 4 }
            return bytes[offset..<offset + 4].reduce(0) { $0 << 8 | UInt32($1) }
        }

        mutating func string() throws(Failure) -> String {
            let count = Int(try u32())
            guard offset + count <= bytes.count else { throw .protocolError("a mux message ended early") }
            defer { offset += count }
            return String(decoding: bytes[offset..<offset + count], as: UTF8.self)
        }
    }

    private func send(_ bytes: [UInt8], until deadline: ContinuousClock.Instant) async throws(Failure) {
        switch await socket.write(bytes, until: deadline) {
        case .written: return
        case .closed: throw .noMaster("the master on \(path) closed the control connection")
        case .timedOut: throw .timedOut("the master on \(path) took no request in time")
        case .failed(let why): throw .noMaster("writing to the master on \(path) failed: \(why)")
        }
    }

    private func receive(until deadline: ContinuousClock.Instant) async throws(Failure) -> Reader {
        let length = try await receive(exactly: 4, until: deadline)
        let count = Int(length.reduce(0) { $0 << 8 | UInt32($1) })
        guard count >= 4, count <= 256 * 1024 else { throw .protocolError("the master sent a mux message of \(count) bytes") }
        return Reader(bytes: try await receive(exactly: count, until: deadline))
    }

    private func receive(exactly count: Int, until deadline: ContinuousClock.Instant) async throws(Failure) -> [UInt8] {
        var collected: [UInt8] = []
        while collected.count < count {
            switch await socket.read(upTo: count - collected.count, until: deadline) {
            case .bytes(let more): collected += more
            case .closed: throw .noMaster("the master on \(path) closed the control connection")
            case .timedOut: throw .timedOut("no answer from the master on \(path) in time")
            case .failed(let why): throw .noMaster("reading from the master on \(path) failed: \(why)")
            }
        }
        return collected
    }

    /// One byte with the descriptor attached (SCM_RIGHTS).
    private func sendDescriptor(_ descriptor: Int32, until deadline: ContinuousClock.Instant) async throws(Failure) {
        while true {
            if UnixSocket.sendDescriptor(descriptor, over: socket.fd) == 1 { return }
            let code = errno
            if code == EAGAIN || code == EWOULDBLOCK || code == EINTR {
                switch await Reactor.shared.wait(socket.fd, for: .write, until: deadline) {
                case .ready: continue
                case .timedOut: throw .timedOut("the master on \(path) took no descriptor in time")
                case .failed(let why): throw .noMaster(why)
                case .cancelled: throw .timedOut("cancelled while passing a descriptor to the master on \(path)")
                case .closed: throw .noMaster("the control connection to \(path) was closed")
                }
            }
            throw .noMaster("passing a descriptor to the master on \(path) failed: \(Posix.errorText(code))")
        }
    }

    private static func socketPair() throws(Failure) -> DescriptorPair {
        do {
            return try UnixSocket.pair(nonBlocking: true)
        } catch {
            throw .protocolError(error.description)
        }
    }
}
