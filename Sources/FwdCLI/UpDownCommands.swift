import ArgumentParser
import Foundation
import FwdCore

struct UpCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Bring tunnels or groups up and wait until each passes its probe.",
        discussion: """
        Starts the supervisor in the background if none runs (it outlives this command and the terminal), \
        asks it for the tunnels, and waits. Exits 0 when every tunnel is up; otherwise non-zero with each \
        tunnel's reason, as soon as each has one (a failed probe, a refused login), without waiting out the \
        timeout. Example: fwd up intranet-wiki work
        """
    )

    @Argument(help: "Tunnel or group names.", completion: Completions.tunnelsAndGroups)
    var names: [String]

    @Option(help: "Seconds to wait for every tunnel to pass its probe.")
    var timeout: Double = 30

    @Flag(name: .shortAndLong, help: "Print nothing on success.")
    var quiet = false

    func run() async throws {
        let context = Context.current()
        let config = try context.loadConfig()
        let tunnels = try config.resolve(names)
        // The supervisor starts while this writes what it wants; its answer to `watch` reads that.
        let starting = try Control.startSupervisor(context.paths, executable: Executable.path, environment: ProcessInfo.processInfo.environment)
        let store = try Store(path: context.paths.database)
        try store.setDesired(.up, tunnels: tunnels)
        try starting?.waitUntilReady()
        let request = ControlRequest(op: .watch, config: config.path, names: tunnels.map(\.name), prompt: Waiter.canPrompt)
        let client = try Waiter.watch(request, paths: context.paths, starting: true)
        let outcome: [String]
        do {
            outcome = try Waiter(names: tunnels.map(\.name), quiet: quiet)
                .wait(client, until: { $0 == .up }, failFast: { [.failed, .needsAuth, .degraded].contains($0) }, timeout: timeout)
        } catch Waiter.Cancelled.atPrompt {
            // Ctrl-C at a login question: this command's tunnels go down, as `fwd down` would take them.
            try store.setDesired(.down, tunnels: tunnels)
            _ = try? Control.request(ControlRequest(op: .reconcile, config: config.path), paths: context.paths)
            FileHandle.standardError.write(Data("fwd up: cancelled at the login prompt; \(tunnels.map(\.name).joined(separator: ", ")) \(tunnels.count == 1 ? "is" : "are") down\n".utf8))
            throw ExitCode(130)
        }
        if !outcome.isEmpty {
            for line in outcome { FileHandle.standardError.write(Data("\(line)\n".utf8)) }
            throw ExitCode(1)
        }
    }
}

struct DownCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "down",
        abstract: "Take tunnels or groups down.",
        discussion: "Forwards are cancelled on the live master; a host's master exits with its last tunnel. Example: fwd down --all"
    )

    @Argument(help: "Tunnel or group names.", completion: Completions.tunnelsToTakeDown)
    var names: [String] = []

    @Flag(help: "Take every tunnel down.")
    var all = false

    @Option(help: "Seconds to wait.")
    var timeout: Double = 15

    @Flag(name: .shortAndLong, help: "Print nothing on success.")
    var quiet = false

    func validate() throws {
        if names.isEmpty == !all { throw ValidationError("name tunnels or groups, or give --all") }
    }

    func run() async throws {
        let context = Context.current()
        let store = try Store(path: context.paths.database)
        let targets: [TunnelStatus]
        if all {
            targets = try store.tunnels()
        } else {
            let config = try context.loadConfig()
            let wanted = try config.resolve(names)
            let known = try store.tunnels(named: wanted.map(\.name))
            // A tunnel never brought up has no row yet; it gets one, recorded down.
            targets = wanted.map { t in
                known[t.name] ?? TunnelStatus(name: t.name, host: t.host, desired: .down, state: .down, since: Date(),
                                              forwards: ForwardStatus.initial(for: t), updatedAt: Date())
            }
        }
        try store.setDesired(.down, recorded: targets)
        guard let client = try? Waiter.watch(ControlRequest(op: .watch, config: context.paths.config, names: targets.map(\.name)),
                                             paths: context.paths, starting: false) else {
            // Nothing supervises: nothing can be running. Say so in the state rather than leave stale rows.
            for t in targets { try store.transition(t.name, to: .down, pid: nil, error: nil, message: "taken down") }
            try report(targets.map(\.name), store: store)
            return
        }
        let left = try Waiter(names: targets.map(\.name), quiet: true)
            .wait(client, until: { $0 == .down || $0 == .failed }, failFast: { _ in false }, timeout: timeout)
        if !left.isEmpty {
            for line in left { FileHandle.standardError.write(Data("\(line)\n".utf8)) }
            throw ExitCode(1)
        }
        try report(targets.map(\.name), store: store)
    }

    func report(_ names: [String], store: Store) throws {
        guard !quiet else { return }
        for name in names { print("\(name): \(try store.tunnel(name)?.state.rawValue ?? "down")") }
    }
}

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
            var pending: [String] = []
            var failed = false
            for name in names {
                let row = rows[name]
                let state = row?.state ?? .down
                if done(state) { continue }
                if failFast(state) { failed = true }
                pending.append("\(name): \(state.rawValue)\(row?.lastError.map { " — \($0)" } ?? "")")
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
            if heard && failed && allSettled { return pending }
            if let ending { return pending.map { "\($0) (\(ending))" } }
            // The time a person takes to answer does not count against the timeout.
            if desk.isAsking { deadline = max(deadline, Date().addingTimeInterval(timeout)) }
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else {
                return pending.map { $0.contains(": failed") ? $0 : "\($0) (timed out after \(Int(timeout)) s)" }
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
        return ports.isEmpty ? "" : " (\(ports.joined(separator: ", ")))"
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

extension SupervisorOptions {
    /// The options from the environment, with this fwd as the masters' askpass (logins that need a person ask at
    /// the terminal of the `fwd up` waiting for them).
    static func withAskpass() -> SupervisorOptions {
        var options = SupervisorOptions.fromEnvironment()
        options.askpass = Executable.path
        return options
    }
}

/// The path of this executable, so the supervisor is started from the same binary.
enum Executable {
    static var path: String {
        let link = "/proc/self/exe"
        if let resolved = try? FileManager.default.destinationOfSymbolicLink(atPath: link) { return resolved }
        if let path = Bundle.main.executablePath { return path }
        return URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
    }
}
