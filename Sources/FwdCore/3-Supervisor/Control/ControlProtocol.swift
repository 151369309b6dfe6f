import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A request to the running supervisor over its control socket: one JSON object on one line. The supervisor
/// answers with one `ControlReply` line, then, for `watch` and `follow`, one line per change until either
/// side closes.
package struct ControlRequest: Codable, Sendable, Equatable {
    package enum Op: String, Codable, Sendable {
        case ping, reconcile, check, stop
        /// Reconcile, then stream the named tunnels' rows: now, and after each change (`fwd up`, `fwd down`).
        case watch
        /// Stream the named tunnels' rows, now and after each change, without applying the config or retrying
        /// anything: a view that only looks (`fwd top`), so opening it changes nothing. With `prompt`, login
        /// questions come as for `watch`.
        case rows
        /// Stream events with an id above `after` (of `names[0]` only, when given): `fwd logs -f`.
        case follow
        /// Check the masters of the named tunnels (all when nil) now; restart those whose path is gone.
        case reconnect
        /// Apply the config file as it now is (`fwd reload`): what changed is changed on the live masters,
        /// removed tunnels go down, the rest is not touched.
        case reload
        /// The metrics in the Prometheus text format (`fwd metrics`), as one element of `lines`.
        case metrics
    }

    package var op: Op
    package var config: String?
    package var names: [String]?
    package var after: Int64?
    /// For `watch` and `rows`: the client can ask its user at a terminal (stdin and /dev/tty are one). Login questions of
    /// the named tunnels' hosts then come on this connection as `ControlReply.prompt`, answered with a
    /// `PromptAnswer` line.
    package var prompt: Bool?

    package init(op: Op, config: String? = nil, names: [String]? = nil, after: Int64? = nil, prompt: Bool? = nil) {
        self.op = op
        self.config = config
        self.names = names
        self.after = after
        self.prompt = prompt
    }
}

/// A client's answer to a `ControlReply.prompt`, one line on the watch connection. It goes to the relay of the
/// master that asked, and nowhere else: never stored, logged or echoed back.
package struct PromptAnswer: Codable, Sendable {
    package var id: Int
    /// nil with `cancel` (Ctrl-C at the prompt) or `unable` (the terminal could not be used after all).
    package var answer: String?
    package var cancel: Bool?
    package var unable: Bool?

    package init(id: Int, answer: String? = nil, cancel: Bool? = nil, unable: Bool? = nil) {
        self.id = id
        self.answer = answer
        self.cancel = cancel
        self.unable = unable
    }
}

/// Why the supervisor could not do what was asked; the CLI words it.
package enum ControlFailure: Error, Codable, Sendable, Equatable, CustomStringConvertible {
    /// The config did not load; the message names file, line and column.
    case config(String)
    /// The state database refused a read or a write.
    case store(String)
    /// The request was not one JSON object on one line.
    case malformed(String)
    /// The request line was longer than the limit (bytes).
    case tooLarge(limit: Int)
    /// No complete request arrived within the read timeout (seconds).
    case timedOut(seconds: Int)
    /// The supervisor is stopping and takes no new work.
    case stopping

    package var description: String {
        switch self {
        case .config(let message): return message
        case .store(let message): return "the supervisor cannot use the state database: \(message)"
        case .malformed(let why): return "the supervisor could not read the request (\(why)); is this fwd the same version as the running supervisor? `fwd daemon --stop` restarts it on the next `fwd up`"
        case .tooLarge(let limit): return "the request is larger than the supervisor's limit of \(limit) bytes"
        case .timedOut(let seconds): return "no complete request arrived within \(seconds) s"
        case .stopping: return "the supervisor is stopping; run the command again"
        }
    }
}

/// One line from the supervisor. The wire form is one JSON object with `ok`, the supervisor's `pid` and at
/// most one of `error`, `tunnel`, `event`, `lines`, `prompt` or `withdrawn`, so fwd versions on either side
/// of the socket read each other.
package enum ControlReply: Codable, Sendable, Equatable {
    /// Done, or (for `watch` and `follow`) accepted: the stream follows.
    case ok(pid: Int32)
    case failed(ControlFailure)
    /// For `watch`: a tunnel's row.
    case tunnel(TunnelStatus)
    /// For `follow`: an event.
    case event(Event)
    /// For `reconnect`: what was done, one line per host.
    case lines([String])
    /// For `watch` with `prompt`: a login question to ask the user.
    case prompt(LoginQuestion)
    /// For `watch` with `prompt`: the question with this id needs no answer any more (its ssh exited).
    case withdrawn(Int)

    /// `ok` from this process.
    package static var done: ControlReply { .ok(pid: getpid()) }

    private enum Key: String, CodingKey { case ok, pid, error, tunnel, event, lines, prompt, withdrawn }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        if let failure = try c.decodeIfPresent(ControlFailure.self, forKey: .error) { self = .failed(failure) }
        else if try !c.decode(Bool.self, forKey: .ok) { self = .failed(.malformed("the supervisor refused the request")) }
        else if let row = try c.decodeIfPresent(TunnelStatus.self, forKey: .tunnel) { self = .tunnel(row) }
        else if let event = try c.decodeIfPresent(Event.self, forKey: .event) { self = .event(event) }
        else if let lines = try c.decodeIfPresent([String].self, forKey: .lines) { self = .lines(lines) }
        else if let question = try c.decodeIfPresent(LoginQuestion.self, forKey: .prompt) { self = .prompt(question) }
        else if let id = try c.decodeIfPresent(Int.self, forKey: .withdrawn) { self = .withdrawn(id) }
        else { self = .ok(pid: try c.decode(Int32.self, forKey: .pid)) }
    }

    package func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        if case .failed = self { try c.encode(false, forKey: .ok) } else { try c.encode(true, forKey: .ok) }
        if case .ok(let pid) = self { try c.encode(pid, forKey: .pid) } else { try c.encode(getpid(), forKey: .pid) }
        switch self {
        case .ok: break
        case .failed(let failure): try c.encode(failure, forKey: .error)
        case .tunnel(let row): try c.encode(row, forKey: .tunnel)
        case .event(let event): try c.encode(event, forKey: .event)
        case .lines(let lines): try c.encode(lines, forKey: .lines)
        case .prompt(let question): try c.encode(question, forKey: .prompt)
        case .withdrawn(let id): try c.encode(id, forKey: .withdrawn)
        }
    }
}

package enum ControlError: Error, CustomStringConvertible {
    case notRunning
    case alreadyRunning(pid: Int32?)
    /// The supervisor answered with a failure.
    case refused(ControlFailure)
    case failed(String)

    package var description: String {
        switch self {
        case .notRunning: return "no fwd supervisor is running for this state directory; `fwd up NAME` starts one"
        case .alreadyRunning(let pid):
            return "a fwd supervisor\(pid.map { " (pid \($0))" } ?? "") already runs for this state directory; use `fwd up`/`fwd down`, or stop it with `fwd daemon --stop`"
        case .refused(let failure): return failure.description
        case .failed(let message): return message
        }
    }
}

/// The wire rules both ends share: one JSON object per line, with limits.
extension Control {
    /// The longest request line the supervisor reads, and how long it waits for one.
    static let requestLimit = 64 * 1024
    static let requestTimeout = 5.0
    /// A client that reads nothing while this much of its stream is waiting is dropped.
    static let replyBacklogLimit = 4 << 20

    static func line<T: Encodable>(_ value: T) -> Data {
        ((try? JSONEncoder().encode(value)) ?? Data("{}".utf8)) + Data("\n".utf8)
    }
}
