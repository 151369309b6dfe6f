import Foundation
import FwdCore

/// Follows the rows the supervisor pushes for the named tunnels until each reaches a wanted state, printing
/// progress on a terminal.
struct Waiter {
    let names: [String]
    let quiet: Bool

    enum Cancelled: Error { case atPrompt }

    /// What a wait does with a tunnel the supervisor retries in the background (a failed attempt, with the next
    /// one scheduled).
    enum Retries {
        /// Nothing: the caller waits for another state (`fwd down`).
        case ignore
        /// Keep waiting; a line that gives up on it says that fwd keeps trying (`fwd up --wait`).
        case mention
        /// The outcome is known: stop waiting for it, and say so (`fwd up`).
        case settle
    }

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
              retries: Retries = .ignore, timeout: Double) throws -> [String] {
        let tty = isatty(STDERR_FILENO) == 1 && !quiet
        let started = Date()
        var deadline = started.addingTimeInterval(timeout)
        var rows: [String: TunnelStatus] = [:]
        var shown: [String: String] = [:]
        /// Whether a login question came to this terminal: its person is there, and the next attempt asks again.
        var prompted = false
        /// A failed attempt of this command's time or later, with the next one scheduled: the outcome is known.
        /// Not while a person answers logins here: returning would leave the next attempt's question unasked.
        func retried(_ row: TunnelStatus?) -> Bool {
            guard retries == .settle, !prompted, let row, row.state == .starting, row.lastError != nil, let next = row.nextRetry else { return false }
            return next > started
        }
        func line(_ name: String, _ row: TunnelStatus?, timedOut: Bool) -> String {
            let state = row?.state ?? .down
            var line = "\(name): \(state.rawValue)"
            if let error = row?.lastError {
                line += " — \(error)"
            } else if timedOut, state == .starting {
                line += " — still connecting"
            }
            if timedOut { line += " (timed out after \(Int(timeout)) s)" }
            if retries != .ignore, state == .starting, let row {
                line += "; " + RetryWording.stillTrying(name, attempts: row.attempts, next: row.nextRetry)
            }
            return line
        }
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
            var pending: [String] = []
            var failed = false
            for name in names {
                let row = rows[name]
                let state = row?.state ?? .down
                if done(state) { continue }
                if failFast(state) || retried(row) { failed = true }
                pending.append(line(name, row, timedOut: false))
            }
            // The snapshot of every named tunnel arrives first: judge only once each has been heard of.
            let heard = names.allSatisfy { rows[$0] != nil }
            if heard && pending.isEmpty {
                if !quiet {
                    for name in names { print("\(name): \(rows[name]?.state.rawValue ?? "down")\(Self.summary(rows[name]))") }
                }
                return []
            }
            let allSettled = names.allSatisfy { done(rows[$0]?.state ?? .down) || failFast(rows[$0]?.state ?? .down) || retried(rows[$0]) }
            if heard && failed && allSettled { return pending }
            if let ending { return pending.map { "\($0) (\(ending))" } }
            // The time a person takes to answer does not count against the timeout.
            if desk.isAsking { deadline = max(deadline, Date().addingTimeInterval(timeout)) }
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else {
                // A failed tunnel's line already says why; the others ran out of time.
                return names.filter { !done(rows[$0]?.state ?? .down) }.map { name in
                    let row = rows[name]
                    return row?.state == .failed ? line(name, row, timedOut: false) : line(name, row, timedOut: true)
                }
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
                prompted = true
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
            // Each attempt shows as it happens: a new state, reason or failed attempt is a new line.
            let progress = Self.progress(row)
            if tty, !desk.isAsking, shown[row.name] != progress {
                shown[row.name] = progress
                FileHandle.standardError.write(Data("  \(progress)\n".utf8))
            }
        }
    }

    /// "db: starting — ssh: connect to host … refused (attempt 2 failed)".
    static func progress(_ row: TunnelStatus) -> String {
        let attempt = row.state == .starting && row.attempts > 0 ? " (attempt \(row.attempts) failed)" : ""
        return "\(row.name): \(row.state.rawValue)\(row.lastError.map { " — \($0)" } ?? "")\(attempt)"
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
