#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// The conversation between `fwd askpass` (the program ssh runs for each prompt) and the relay of that ssh's
/// master, over the relay's private unix socket. Request: `FWDASK1 NUL hint NUL prompt NUL`. Reply: `A answer NUL`
/// or `C` (cancel), then the relay closes. The askpass keeps its end open while it waits, so the relay reads EOF
/// exactly when the askpass (and so, usually, its ssh) has gone.
enum AskpassWire {
    static let magic = "FWDASK1"
    /// ssh reads at most 1023 bytes of an answer (readpass.c) and cuts it at the first CR or LF.
    static let answerLimit = 1023
    static let requestLimit = 64 * 1024

    static func request(prompt: String, hint: String) -> [UInt8] {
        Array(magic.utf8) + [0] + Array(hint.utf8) + [0] + Array(prompt.utf8) + [0]
    }

    /// The hint and prompt once `bytes` hold a whole request; nil while incomplete or when it is not one.
    static func parseRequest(_ bytes: [UInt8]) -> (hint: String, prompt: String)? {
        let fields = bytes.split(separator: 0, maxSplits: 3, omittingEmptySubsequences: false)
        guard fields.count == 4, fields[3].isEmpty, String(decoding: fields[0], as: UTF8.self) == magic else { return nil }
        return (String(decoding: fields[1], as: UTF8.self), String(decoding: fields[2], as: UTF8.self))
    }

    static func answerReply(_ answer: String) -> [UInt8] { [UInt8(ascii: "A")] + Array(answer.utf8) + [0] }
    static let cancelReply: [UInt8] = [UInt8(ascii: "C")]
}

/// The askpass program's side: one prompt, one answer.
package enum AskpassClient {
    /// The environment variable naming the relay's socket; the only thing the askpass needs.
    package static let socketVariable = "FWD_ASKPASS_SOCKET"

    package enum Failure: Error, Equatable {
        case noSocket
        case connect(errno: Int32)
        case foreignPeer(uid: UInt32)
        case cancelled
        case closed
        case parentExited
    }

    /// Asks the relay at `socketPath` and waits for the answer. Gives up when ssh (the parent) exits, since no
    /// one is left to read the answer.
    package static func ask(prompt: String, hint: String, socketPath: String) -> Result<String, Failure> {
        let parent = getppid()
        let fd = socket(AF_UNIX, SOCK_STREAM_VALUE, 0)
        guard fd >= 0 else { return .failure(.connect(errno: errno)) }
        defer { close(fd) }
        guard UnixSocket.connect(fd, path: socketPath) else { return .failure(.connect(errno: errno)) }
        // A socket in a private directory can only be ours, but the peer's uid is what makes it certain.
        guard let peer = UnixSocket.peer(of: fd) else { return .failure(.closed) }
        guard peer.uid == geteuid() else { return .failure(.foreignPeer(uid: peer.uid)) }
        guard UnixSocket.writeAll(fd, AskpassWire.request(prompt: prompt, hint: hint)) else { return .failure(.closed) }

        var reply: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 2048)
        while true {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, 100)
            if ready < 0 && errno != EINTR { return .failure(.closed) }
            if getppid() != parent { return .failure(.parentExited) }
            guard ready > 0 else { continue }
            let n = recv(fd, &buffer, buffer.count, 0)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return .failure(reply.first == UInt8(ascii: "C") ? .cancelled : .closed) }
            reply += buffer[0..<n]
            if reply.first == UInt8(ascii: "C") { return .failure(.cancelled) }
            if reply.first == UInt8(ascii: "A"), let end = reply.firstIndex(of: 0) {
                let answer = String(decoding: reply[1..<end], as: UTF8.self)
                for i in reply.indices { reply[i] = 0 }
                for i in buffer.indices { buffer[i] = 0 }
                return .success(answer)
            }
            if reply.count > AskpassWire.answerLimit + 2 { return .failure(.closed) }
        }
    }
}

/// Small unix-socket helpers shared by the relay and the askpass client.
enum UnixSocket {
    struct Peer: Equatable {
        var pid: Int32
        var uid: UInt32
    }

    /// sun_path holds 108 bytes on Linux, 104 on macOS, including the terminating NUL.
    static var pathLimit: Int { MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1 }

    static func withAddress<T>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T? {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count <= pathLimit else { return nil }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }

    static func connect(_ fd: Int32, path: String) -> Bool {
        withAddress(path) { systemConnect(fd, $0, $1) == 0 } ?? false
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, MSG_NOSIGNAL_VALUE) }
            if n < 0 { if errno == EINTR { continue }; return false }
            offset += n
        }
        return true
    }

    /// The pid and uid of the process at the other end, as the kernel recorded them at connect (or listen) time.
    static func peer(of fd: Int32) -> Peer? {
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
}

private func systemConnect(_ fd: Int32, _ addr: UnsafePointer<sockaddr>, _ len: socklen_t) -> Int32 {
    connect(fd, addr, len)
}
