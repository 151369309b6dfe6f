import Foundation
import FwdCore

/// Follows the rows the supervisor pushes for the named tunnels until each reaches a wanted state, printing
/// progress on a terminal.
struct Waiter {
    let names: [String]
    let quiet: Bool

    enum Cancelled: Error { case atPrompt }

    /// Whether this command can ask its user: stdin is a terminal and /dev/tty opens. A script, `</dev/null` or a
    /// service cannot, and a login that needs an answer then fails at once with what it needs.
    static var canPrompt: Bool { isatty(STDIN_FILENO) == 1 && TerminalPrompter().isAvailable }

    /// Sends a `watch` request and returns the connection once the supervisor has applied it. With `starting`,
    /// starts a supervisor first when none runs (one that was just stopping is replaced).
    static func watch(_ request: ControlRequest, paths: FwdPaths, starting: Bool) throws -> ControlClient {
        var attempt = 0
        while true {
            attempt += 1
            do {
                if starting {
                    try Control.ensureSupervisor(paths, executable: Executable.path, environment: ProcessInfo.processInfo.environment)
                }
                let client = try ControlClient(paths: paths)
                try client.send(request)
                _ = try client.reply(timeout: 30)
                return client
            } catch ControlError.refused(.stopping) where starting && attempt < 3 {
                continue
            } catch ControlError.notRunning where starting && attempt < 3 {
                continue
            }
        }
    }

    /// Returns one line per tunnel that did not get there ("name: state — reason"), empty on success.
    func wait(_ client: ControlClient, until done: (TunnelState) -> Bool, failFast: (TunnelState) -> Bool,
              timeout: Double) throws -> [String] {
        let tty = isatty(STDERR_FILENO) == 1 && !quiet
        var deadline = Date().addingTimeInterval(timeout)
        var rows: [String: TunnelStatus] = [:]
        var shown: [String: TunnelState] = [:]
        var ending: String?
        // Login questions on this connection: asked on the terminal, answered on the same connection.
        let answers = AnswerLine(client)
        let desk = PromptDesk { question, outcome in
            switch outcome {
            case .answer(let answer): answers.send(PromptAnswer(id: question.id, answer: answer))
            case .cancelled:
                answers.send(PromptAnswer(id: question.id, cancel: true))
                answers.cancelled = true
            case .withdrawn: break
            case .noTerminal: answers.send(PromptAnswer(id: question.id, unable: true))
            }
        }
        while true {
            if answers.cancelled { throw Cancelled.atPrompt }
            // Each tunnel not there yet, with its state: the lines are judged by the state, never by their text.
            var pending: [(state: TunnelState, line: String)] = []
            var failed = false
            for name in names {
                let row = rows[name]
                let state = row?.state ?? .down
                if done(state) { continue }
                if failFast(state) { failed = true }
                pending.append((state, "\(name): \(state.rawValue)\(row?.lastError.map { " — \($0)" } ?? "")"))
            }
            // The snapshot of every named tunnel arrives first: judge only once each has been heard of.
            let heard = names.allSatisfy { rows[$0] != nil }
            if heard && pending.isEmpty {
                if !quiet {
                    for name in names { print("\(name): \(rows[name]?.state.rawValue ?? "down")\(Self.summary(rows[name]))") }
                }
                return []
            }
            let allSettled = names.allSatisfy { done(rows[$0]?.state ?? .down) || failFast(rows[$0]?.state ?? .down) }
            if heard && failed && allSettled { return pending.map(\.line) }
            if let ending { return pending.map { "\($0.line) (\(ending))" } }
            // The time a person takes to answer does not count against the timeout.
            if desk.isAsking { deadline = max(deadline, Date().addingTimeInterval(timeout)) }
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else {
                // A failed tunnel's line already says why; the others ran out of time.
                return pending.map { $0.state == .failed ? $0.line : "\($0.line) (timed out after \(Int(timeout)) s)" }
            }
            let reply: ControlReply?
            do {
                // While a question is open, wake often enough to notice its outcome.
                reply = try client.next(timeout: desk.isAsking ? min(left, 0.2) : left)
            } catch {
                continue  // the deadline passed, or a slice while asking: judged above
            }
            guard let reply else {
                ending = "the supervisor stopped; `fwd logs` says why"
                continue
            }
            let row: TunnelStatus
            switch reply {
            case .prompt(let question):
                desk.show(question)
                continue
            case .withdrawn(let id):
                desk.withdraw(id)
                continue
            case .tunnel(let r) where names.contains(r.name):
                row = r
            default:
                continue
            }
            rows[row.name] = row
            if tty, !desk.isAsking, shown[row.name] != row.state {
                shown[row.name] = row.state
                FileHandle.standardError.write(Data("  \(row.name): \(row.state.rawValue)\(row.lastError.map { " — \($0)" } ?? "")\n".utf8))
            }
        }
    }

    static func summary(_ row: TunnelStatus?) -> String {
        guard let row else { return "" }
        let ports = row.forwards.compactMap { f in f.allocatedPort.map { "\(f.spec) → server port \($0)" } }
        // A public forward says once, here, who else can use it.
        let shared = row.forwards.compactMap { f in
            f.shared.flatMap { $0.isEmpty ? nil : "\(f.kind.flag) \(f.spec) shared on \(f.kind == .remote ? "the server at " : "")\($0.joined(separator: ", "))" }
        }
        let notes = (ports.isEmpty ? [] : [ports.joined(separator: ", ")]) + shared
        return notes.isEmpty ? "" : " (\(notes.joined(separator: "; ")))"
    }
}

/// Sends prompt answers on the watch connection from the prompt's thread; remembers a cancel for the waiting loop.
final class AnswerLine: @unchecked Sendable {
    private let client: ControlClient
    private let lock = NSLock()
    private var wasCancelled = false

    init(_ client: ControlClient) { self.client = client }

    func send(_ answer: PromptAnswer) {
        lock.withLock { _ = try? client.send(answer) }
    }

    var cancelled: Bool {
        get { lock.withLock { wasCancelled } }
        set { lock.withLock { wasCancelled = newValue } }
    }
}
