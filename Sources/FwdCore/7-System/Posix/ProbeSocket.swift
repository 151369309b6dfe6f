#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Where a socket probe connects: the listen side of a -L/-D forward on this machine.
enum ProbeAddress: Sendable, Equatable, CustomStringConvertible {
    case tcp(host: String, port: Int)
    case unix(path: String)

    /// A forward's listener as a client reaches it. Wildcard and unspecified binds are reached on loopback.
    init(listen endpoint: ForwardEndpoint, port allocated: Int? = nil) {
        switch endpoint {
        case .unix(let path): self = .unix(path: path)
        case .tcp(let host, let port): self = .tcp(host: Self.connectHost(forBind: host), port: port == 0 ? allocated ?? 0 : port)
        }
    }

    static func connectHost(forBind host: String?) -> String {
        guard let host else { return "127.0.0.1" }
        switch host.lowercased() {
        case "", "*", "0.0.0.0", "localhost": return "127.0.0.1"
        case "::": return "::1"
        default: return host
        }
    }

    var description: String {
        switch self {
        case .tcp(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix(let path): path
        }
    }
}

enum ConnectFailure: Error {
    /// Nothing listens (ECONNREFUSED, or no socket file).
    case refused(String)
    case timedOut
    case failed(String)
}

enum ReadResult: Equatable {
    case bytes([UInt8])
    /// EOF or a reset: the peer is gone.
    case closed
    case timedOut
    case failed(String)
}

enum WriteResult: Equatable {
    case written
    case closed
    case timedOut
    case failed(String)
}

/// A connected, non-blocking, close-on-exec stream that closes itself when it goes out of scope, so no path
/// through a probe can leak it. Usually one socket; a channel through the master is two socketpair ends
/// (`fd` reads what the master writes, `writeFD` carries what the master reads), so the master's EOF on one
/// direction shows at once, plus the control connection the channel lives on.
struct ProbeSocket: ~Copyable {
    private let readEnd: Descriptor
    private let writeEnd: Descriptor?
    /// A descriptor that must stay open as long as this stream: the master's control connection, without
    /// which the master closes the channel.
    private let held: Descriptor?
    let fd: Int32
    let writeFD: Int32

    init(_ socket: consuming Descriptor) {
        fd = socket.raw
        writeFD = fd
        readEnd = socket
        writeEnd = nil
        held = nil
    }

    init(reading: consuming Descriptor, writing: consuming Descriptor, holding: consuming Descriptor) {
        fd = reading.raw
        writeFD = writing.raw
        readEnd = reading
        writeEnd = .some(writing)
        held = .some(holding)
    }

    static func connect(to address: ProbeAddress, until deadline: ContinuousClock.Instant) async throws(ConnectFailure) -> ProbeSocket {
        let candidates = try await candidates(for: address)
        var lastFailure = ConnectFailure.failed("\(address) has no address")
        for candidate in candidates {
            do throws(ConnectFailure) {
                var done = false
                let socket = try startConnect(candidate, done: &done)
                if done { return socket }
                let outcome = await Reactor.shared.wait(socket.fd, for: .write, until: deadline)
                return try finishConnect(socket, outcome, isUnix: candidate.family == AF_UNIX)
            } catch .timedOut {
                throw .timedOut
            } catch {
                lastFailure = error
            }
        }
        throw lastFailure
    }

    /// Literal addresses are parsed at once; a name goes to getaddrinfo on a thread of its own, since it may
    /// block on DNS (listen addresses are nearly always literals, so that thread is rare).
    private static func candidates(for address: ProbeAddress) async throws(ConnectFailure) -> [SocketAddress] {
        guard case .tcp(let host, let port) = address else { return try resolve(address) }
        do {
            return try await Resolver.resolveOffPool(host: host, port: port)
        } catch {
            throw .failed(error.description)
        }
    }

    private static func resolve(_ address: ProbeAddress) throws(ConnectFailure) -> [SocketAddress] {
        switch address {
        case .unix(let path):
            guard let bytes = UnixSocket.address(path) else {
                throw .failed("the socket path is longer than \(UnixSocket.pathLimit) bytes")
            }
            return [SocketAddress(family: AF_UNIX, bytes: bytes)]
        case .tcp(let host, let port):
            do {
                return try Resolver.resolve(host: host, port: port)
            } catch {
                throw .failed(error.description)
            }
        }
    }

    /// `done` tells whether the connect completed at once (loopback often does) or is in progress.
    private static func startConnect(_ candidate: SocketAddress, done: inout Bool) throws(ConnectFailure) -> ProbeSocket {
        let isUnix = candidate.family == AF_UNIX
        let socket = try newSocket(family: candidate.family)
        let rc = candidate.withSockaddr { Posix.connectRaw(socket.raw, $0, $1) }
        let code = errno
        done = rc == 0
        if done || code == EINPROGRESS || code == EINTR { return ProbeSocket(socket) }
        throw connectFailure(code, isUnix: isUnix)
    }

    private static func newSocket(family: Int32) throws(ConnectFailure) -> Descriptor {
        do {
            return try Posix.streamSocket(family: family, nonBlocking: true)
        } catch {
            throw .failed(error.description)
        }
    }

    private static func finishConnect(_ sock: consuming ProbeSocket, _ outcome: WaitOutcome, isUnix: Bool) throws(ConnectFailure) -> ProbeSocket {
        switch outcome {
        case .timedOut: throw .timedOut
        case .failed(let text): throw .failed(text)
        case .cancelled: throw .failed("cancelled")
        case .closed: throw .failed("the socket was closed")
        case .ready:
            var soError: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            guard getsockopt(sock.fd, SOL_SOCKET, SO_ERROR, &soError, &length) == 0 else {
                throw .failed("getsockopt(SO_ERROR): \(Posix.errorText(errno))")
            }
            if soError == 0 { return sock }
            throw connectFailure(soError, isUnix: isUnix)
        }
    }

    private static func connectFailure(_ code: Int32, isUnix: Bool) -> ConnectFailure {
        switch code {
        case ECONNREFUSED: .refused(Posix.errorText(code))
        case ENOENT where isUnix: .refused(Posix.errorText(code))
        case ETIMEDOUT: .timedOut
        // A UNIX socket whose accept backlog is full: the listener exists but does not keep up.
        case EAGAIN where isUnix: .timedOut
        default: .failed(Posix.errorText(code))
        }
    }

    /// Reads whatever is available, up to `limit` bytes, waiting until `deadline` for the first byte.
    func read(upTo limit: Int, until deadline: ContinuousClock.Instant) async -> ReadResult {
        var buffer = [UInt8](repeating: 0, count: limit)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, limit, 0) }
            if count > 0 { return .bytes(Array(buffer[..<count])) }
            if count == 0 { return .closed }
            switch errno {
            case EAGAIN, EWOULDBLOCK, EINTR:
                switch await Reactor.shared.wait(fd, for: .read, until: deadline) {
                case .timedOut: return .timedOut
                case .failed(let text): return .failed(text)
                case .cancelled: return .failed("cancelled")
                case .closed: return .closed
                case .ready: continue
                }
            case ECONNRESET, ECONNABORTED, EPIPE: return .closed
            case let code: return .failed(Posix.errorText(code))
            }
        }
    }

    /// Reads until at least `count` bytes arrived (or EOF / the deadline); returns what it has.
    func read(atLeast count: Int, until deadline: ContinuousClock.Instant) async -> (bytes: [UInt8], end: ReadResult?) {
        var collected: [UInt8] = []
        while collected.count < count {
            switch await read(upTo: 4096, until: deadline) {
            case .bytes(let more): collected += more
            case let end: return (collected, end)
            }
        }
        return (collected, nil)
    }

    func write(_ bytes: [UInt8], until deadline: ContinuousClock.Instant) async -> WriteResult {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes { raw in
                Posix.sendSome(writeFD, UnsafeRawBufferPointer(rebasing: raw[offset...]))
            }
            if sent >= 0 {
                offset += sent
                continue
            }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK:
                switch await Reactor.shared.wait(writeFD, for: .write, until: deadline) {
                case .ready: continue
                case .timedOut: return .timedOut
                case .failed(let text): return .failed(text)
                case .cancelled: return .failed("cancelled")
                case .closed: return .closed
                }
            case EPIPE, ECONNRESET: return .closed
            case let code: return .failed(Posix.errorText(code))
            }
        }
        return .written
    }
}

