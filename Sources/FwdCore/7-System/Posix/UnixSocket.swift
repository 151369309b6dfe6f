#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// UNIX stream sockets: the address, a private listener, connect, the peer's credentials and descriptor
/// passing. The supervisor's control socket, the askpass relays, the ControlMaster's mux socket and the probes
/// all use these.
package enum UnixSocket {
    package struct Peer: Equatable, Sendable {
        package var pid: Int32
        package var uid: UInt32
    }

    /// sun_path holds 108 bytes on Linux, 104 on macOS, including the terminating NUL.
    package static var pathLimit: Int { MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1 }

    /// The sockaddr_un for `path` as bytes; nil when the path is too long.
    package static func address(_ path: String) -> [UInt8]? {
        var addr = sockaddr_un()
        let bytes = Array(path.utf8)
        guard bytes.count <= pathLimit else { return nil }
        addr.sun_family = sa_family_t(AF_UNIX)
        #if canImport(Darwin)
        addr.sun_len = UInt8(MemoryLayout<sockaddr_un>.size)
        #endif
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return withUnsafeBytes(of: &addr) { Array($0) }
    }

    static func withAddress<T>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T? {
        guard let bytes = address(path) else { return nil }
        return bytes.withUnsafeBytes { raw in
            raw.withMemoryRebound(to: sockaddr.self) { body($0.baseAddress!, socklen_t(raw.count)) }
        }
    }

    /// Listens on `path`, a socket only this user can connect to. Linux gives the socket file the mode of the
    /// socket's inode less the umask, so a fchmod before bind makes it 0600 from the moment it exists without
    /// touching the process-wide umask (which other threads' spawns inherit); chmod repeats that for systems
    /// that ignore it. Its directory is private anyway (`FileSystem.makeSocketDirectory`). An existing file at
    /// `path` is an error (EADDRINUSE); callers that own the directory remove stale sockets first.
    package static func listen(path: String, backlog: Int32, nonBlocking: Bool) throws(PosixError) -> Descriptor {
        let socket = try Posix.streamSocket(family: AF_UNIX, nonBlocking: nonBlocking)
        _ = fchmod(socket.raw, 0o600)
        let bound = withAddress(path) { bind(socket.raw, $0, $1) }
        let bindError = errno
        guard let bound else { throw PosixError("bind(\(path))", ENAMETOOLONG) }
        guard bound == 0 else { throw PosixError("bind(\(path))", bindError) }
        guard chmod(path, 0o600) == 0, Posix.listenRaw(socket.raw, backlog) == 0 else {
            let code = errno
            unlink(path)
            throw PosixError("listen(\(path))", code)
        }
        return socket
    }

    /// Most connections a listener serves at once; more wait in its backlog.
    package static let connectionLimit = 64

    /// Accepts on `listener` until the task is cancelled, the listener fails, or `admit` returns false. A
    /// connection from another user is closed unread (the directory already keeps them out; this is the second
    /// lock) and counted by `refused`. While `room()` is false, or accept fails for want of descriptors
    /// (EMFILE, ENFILE), accepting pauses: a level-triggered listener would otherwise wake at once, forever.
    /// `anyPeer` (a TCP listener, which has no peer credentials) admits every connection.
    package static func acceptLoop(_ listener: borrowing Descriptor, anyPeer: Bool = false, room: @Sendable () -> Bool = { true },
                                   refused: @Sendable () -> Void = {}, admit: (consuming Descriptor) -> Bool) async {
        while !Task.isCancelled {
            guard room() else {
                try? await Task.sleep(for: .milliseconds(50))
                continue
            }
            switch await Reactor.shared.wait(listener.raw, for: .read) {
            case .ready, .timedOut: break
            case .cancelled, .closed, .failed: return
            }
            while room() {
                let client: Descriptor?
                do {
                    client = try Posix.accept(listener.raw, nonBlocking: true)
                } catch {
                    try? await Task.sleep(for: .milliseconds(100))
                    break
                }
                guard let client else { break }
                guard anyPeer || peer(of: client.raw)?.uid == geteuid() else {
                    refused()
                    continue
                }
                if !admit(client) { return }
            }
        }
    }

    /// What is at a path a listener is about to bind.
    package enum Occupant: Equatable, Sendable {
        case nothing
        /// A socket nobody listens on (its listener died); removed.
        case staleSocket
        /// A socket a live listener answers on.
        case liveSocket
        /// Not a socket: someone's file, which fwd never deletes.
        case otherFile
    }

    /// Clears `path` for a new listener: removes a socket nobody answers on, and nothing else. Without ssh's
    /// StreamLocalBindUnlink, which unlinks whatever is there (docs/architecture.md, "ControlPath and stale
    /// sockets"). The connect does not block: a full backlog (EAGAIN) is a live listener too.
    @discardableResult
    package static func removeStale(_ path: String) -> Occupant {
        var st = stat()
        guard lstat(path, &st) == 0 else { return .nothing }
        guard st.st_mode & S_IFMT == S_IFSOCK else { return .otherFile }
        guard let socket = try? Posix.streamSocket(family: AF_UNIX, nonBlocking: true) else { return .liveSocket }
        let rc = withAddress(path) { Posix.connectRaw(socket.raw, $0, $1) }
        guard rc == -1, errno == ECONNREFUSED else { return .liveSocket }
        unlink(path)
        return .staleSocket
    }

    /// A blocking connect; for the CLI's requests and the askpass client.
    package static func connect(path: String) throws(PosixError) -> Descriptor {
        let socket = try Posix.streamSocket(family: AF_UNIX, nonBlocking: false)
        guard let rc = withAddress(path, { Posix.connectRaw(socket.raw, $0, $1) }) else { throw PosixError("connect(\(path))", ENAMETOOLONG) }
        guard rc == 0 else { throw PosixError("connect(\(path))", errno) }
        return socket
    }

    /// A connected pair of close-on-exec sockets.
    package static func pair(nonBlocking: Bool) throws(PosixError) -> DescriptorPair {
        var fds: [Int32] = [-1, -1]
        #if canImport(Darwin)
        guard socketpair(AF_UNIX, SOCK_STREAM, 0, &fds) == 0 else { throw PosixError("socketpair()", errno) }
        let ends = DescriptorPair(first: Descriptor(fds[0]), second: Descriptor(fds[1]))
        try Posix.configure(fds[0], nonBlocking: nonBlocking)
        try Posix.configure(fds[1], nonBlocking: nonBlocking)
        return ends
        #else
        let flags = Posix.stream | Int32(SOCK_CLOEXEC.rawValue) | (nonBlocking ? Int32(SOCK_NONBLOCK.rawValue) : 0)
        guard socketpair(AF_UNIX, flags, 0, &fds) == 0 else { throw PosixError("socketpair()", errno) }
        return DescriptorPair(first: Descriptor(fds[0]), second: Descriptor(fds[1]))
        #endif
    }

    /// The pid and uid of the process at the other end, as the kernel recorded them at connect (or listen) time.
    package static func peer(of fd: Int32) -> Peer? {
        #if os(Linux)
        var cred = (pid: Int32(0), uid: UInt32(0), gid: UInt32(0)) // struct ucred
        var length = socklen_t(MemoryLayout.size(ofValue: cred))
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) == 0 else { return nil }
        return Peer(pid: cred.pid, uid: cred.uid)
        #else
        var uid: uid_t = 0, gid: gid_t = 0
        guard getpeereid(fd, &uid, &gid) == 0 else { return nil }
        var pid: pid_t = 0
        var length = socklen_t(MemoryLayout<pid_t>.size)
        _ = getsockopt(fd, 0 /* SOL_LOCAL */, 0x002 /* LOCAL_PEERPID */, &pid, &length)
        return Peer(pid: pid, uid: uid)
        #endif
    }

    /// Sends `descriptor` over `socket` (SCM_RIGHTS) with a one-byte payload, as OpenSSH's mm_send_fd does.
    /// Returns 1 when sent, or -1 with errno set (EAGAIN on a full non-blocking socket).
    package static func sendDescriptor(_ descriptor: Int32, over socket: Int32) -> Int {
        var byte: UInt8 = 0
        return withUnsafeMutableBytes(of: &byte) { payload in
            var iov = iovec(iov_base: payload.baseAddress, iov_len: 1)
            let space = cmsgSpace(MemoryLayout<Int32>.size)
            var control = [UInt8](repeating: 0, count: space)
            return control.withUnsafeMutableBytes { raw in
                withUnsafeMutablePointer(to: &iov) { iovPointer in
                    var message = msghdr()
                    message.msg_iov = iovPointer
                    message.msg_iovlen = 1
                    message.msg_control = raw.baseAddress
                    message.msg_controllen = .init(space)
                    let header = raw.baseAddress!.assumingMemoryBound(to: cmsghdr.self)
                    header.pointee.cmsg_len = .init(cmsgLength(MemoryLayout<Int32>.size))
                    header.pointee.cmsg_level = SOL_SOCKET
                    header.pointee.cmsg_type = Int32(SCM_RIGHTS)
                    (raw.baseAddress! + cmsgHeaderSize).storeBytes(of: descriptor, as: Int32.self)
                    return sendmsg(socket, &message, Posix.noSignal)
                }
            }
        }
    }

    private static let cmsgHeaderSize = cmsgAlign(MemoryLayout<cmsghdr>.size)

    private static func cmsgAlign(_ length: Int) -> Int {
        #if canImport(Darwin)
        let alignment = MemoryLayout<UInt32>.size
        #else
        let alignment = MemoryLayout<Int>.size
        #endif
        return (length + alignment - 1) & ~(alignment - 1)
    }

    private static func cmsgSpace(_ length: Int) -> Int { cmsgHeaderSize + cmsgAlign(length) }

    private static func cmsgLength(_ length: Int) -> Int { cmsgHeaderSize + length }
}

