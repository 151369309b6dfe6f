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
package enum AskpassWire {
    static let magic = "FWDASK1"
    /// ssh reads at most 1023 bytes of an answer (readpass.c) and cuts it at the first CR or LF.
    package static let answerLimit = 1023
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
        let socket: Descriptor
        do {
            socket = try UnixSocket.connect(path: socketPath)
        } catch {
            return .failure(.connect(errno: error.code))
        }
        let fd = socket.raw
        // A socket in a private directory can only be ours, but the peer's uid is what makes it certain.
        guard let peer = UnixSocket.peer(of: fd) else { return .failure(.closed) }
        guard peer.uid == geteuid() else { return .failure(.foreignPeer(uid: peer.uid)) }
        guard Posix.sendAll(fd, AskpassWire.request(prompt: prompt, hint: hint)) else { return .failure(.closed) }

        var reply: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 2048)
        while true {
            let ready = Reactor.waitBlocking(fd, for: .read, until: .now + .milliseconds(100))
            if getppid() != parent { return .failure(.parentExited) }
            if ready == .timedOut { continue }
            guard ready == .ready else { return .failure(.closed) }
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
