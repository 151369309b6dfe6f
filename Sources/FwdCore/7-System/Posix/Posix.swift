#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The few libc constants and calls whose spelling differs between platforms, or whose names methods called
/// `close`, `connect`, `accept` or `send` would shadow. Everything that opens, waits on or closes a descriptor
/// goes through `Descriptor`, `UnixSocket`, `TCPListener`, `Resolver` and `Reactor`, which use these.
package enum Posix {
    #if canImport(Darwin)
    package static let stream = SOCK_STREAM
    /// Darwin has no MSG_NOSIGNAL; `configure` sets SO_NOSIGPIPE on the socket instead.
    package static let noSignal: Int32 = 0
    #else
    package static let stream = Int32(SOCK_STREAM.rawValue)
    package static let noSignal = Int32(MSG_NOSIGNAL)
    #endif

    package static func errorText(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }

    /// No core file and no ptrace by other processes of this user: a fwd process may hold a typed password or
    /// one-time code in memory (the prompter, the supervisor's relay, the askpass helper). Children such as
    /// ssh inherit the zero core limit; exec resets their dumpable flag, and ssh sets its own.
    package static func forbidCoreDumps() {
        var none = rlimit(rlim_cur: 0, rlim_max: 0)
        #if canImport(Glibc)
        _ = setrlimit(__rlimit_resource_t(RLIMIT_CORE.rawValue), &none)
        // prctl is variadic in <sys/prctl.h>, which the Glibc module does not import; PR_SET_DUMPABLE is 4.
        if let sym = dlsym(nil, "prctl") {
            let prctl = unsafeBitCast(sym, to: (@convention(c) (Int32, UInt, UInt, UInt, UInt) -> Int32).self)
            _ = prctl(4, 0, 0, 0, 0)
        }
        #else
        _ = setrlimit(RLIMIT_CORE, &none)
        #endif
    }

    /// A stream socket that is close-on-exec (children such as ssh and sshd never inherit it), never raises
    /// SIGPIPE, and is non-blocking when asked.
    package static func streamSocket(family: Int32, nonBlocking: Bool) throws(PosixError) -> Descriptor {
        #if canImport(Darwin)
        let fd = socket(family, stream, 0)
        #else
        let fd = socket(family, stream | Int32(SOCK_CLOEXEC.rawValue) | (nonBlocking ? Int32(SOCK_NONBLOCK.rawValue) : 0), 0)
        #endif
        guard fd >= 0 else { throw PosixError("socket()", errno) }
        let descriptor = Descriptor(fd)
        #if canImport(Darwin)
        try configure(fd, nonBlocking: nonBlocking)
        #endif
        return descriptor
    }

    /// Close-on-exec, no SIGPIPE, and optionally non-blocking: for descriptors that come from accept(2),
    /// pipe(2) or socketpair(2) without the Linux flags.
    package static func configure(_ fd: Int32, nonBlocking: Bool) throws(PosixError) {
        guard fcntl(fd, F_SETFD, FD_CLOEXEC) == 0 else { throw PosixError("fcntl(FD_CLOEXEC)", errno) }
        if nonBlocking {
            let flags = fcntl(fd, F_GETFL)
            guard flags >= 0, fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0 else { throw PosixError("fcntl(O_NONBLOCK)", errno) }
        }
        #if canImport(Darwin)
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, socklen_t(MemoryLayout<Int32>.size))
        #endif
    }

    /// A pipe whose ends are close-on-exec and non-blocking: `first` reads, `second` writes.
    package static func pipe() throws(PosixError) -> DescriptorPair {
        var fds: [Int32] = [-1, -1]
        guard systemPipe(&fds) == 0 else { throw PosixError("pipe()", errno) }
        let ends = DescriptorPair(first: Descriptor(fds[0]), second: Descriptor(fds[1]))
        try configure(fds[0], nonBlocking: true)
        try configure(fds[1], nonBlocking: true)
        return ends
    }

    /// Sends all of `bytes` on a blocking socket (or a non-blocking one with room), without SIGPIPE. False when
    /// the peer has gone or the socket would block.
    package static func sendAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = send(fd, bytes.baseAddress! + offset, bytes.count - offset, noSignal)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }

    package static func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { sendAll(fd, $0) }
    }

    /// SO_RCVTIMEO / SO_SNDTIMEO on a blocking socket (the lab's server and client).
    package static func setTimeout(_ fd: Int32, _ option: Int32, seconds: Double) {
        let s = max(seconds, 0.001)
        var tv = timeval(tv_sec: Int(s), tv_usec: .init((s - s.rounded(.down)) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, option, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// One send(2) without SIGPIPE: the count written, or -1 with errno set.
    package static func sendSome(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int {
        send(fd, bytes.baseAddress, bytes.count, noSignal)
    }

    static func connectRaw(_ fd: Int32, _ address: UnsafePointer<sockaddr>?, _ length: socklen_t) -> Int32 {
        #if canImport(Glibc)
        Glibc.connect(fd, address, length)
        #elseif canImport(Musl)
        Musl.connect(fd, address, length)
        #else
        Darwin.connect(fd, address, length)
        #endif
    }

    static func listenRaw(_ fd: Int32, _ backlog: Int32) -> Int32 {
        listen(fd, backlog)
    }

    static func acceptRaw(_ fd: Int32) -> Int32 {
        #if canImport(Glibc)
        Glibc.accept(fd, nil, nil)
        #elseif canImport(Musl)
        Musl.accept(fd, nil, nil)
        #else
        Darwin.accept(fd, nil, nil)
        #endif
    }

    /// Accepts one connection: a close-on-exec descriptor (non-blocking when asked), nil when none is waiting
    /// (EAGAIN) or the one that was went away before it could be taken; throws when accept itself fails
    /// (EMFILE, ENFILE: out of descriptors).
    package static func accept(_ listener: Int32, nonBlocking: Bool) throws(PosixError) -> Descriptor? {
        while true {
            let fd = acceptRaw(listener)
            if fd >= 0 {
                let descriptor = Descriptor(fd)
                guard (try? configure(fd, nonBlocking: nonBlocking)) != nil else { return nil }
                return descriptor
            }
            switch errno {
            case EINTR, ECONNABORTED: continue
            case EAGAIN, EWOULDBLOCK, EPROTO: return nil
            default: throw PosixError("accept()", errno)
            }
        }
    }
}

private func systemPipe(_ fds: UnsafeMutablePointer<Int32>) -> Int32 { pipe(fds) }

/// A failed system call: which one, and errno's text.
package struct PosixError: Error, Equatable, CustomStringConvertible {
    package var call: String
    package var code: Int32

    package init(_ call: String, _ code: Int32) {
        self.call = call
        self.code = code
    }

    package var description: String { "\(call): \(Posix.errorText(code))" }
}
