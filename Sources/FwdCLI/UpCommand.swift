import ArgumentParser
import Foundation
import FwdCore

struct UpCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Bring tunnels or groups up and wait until each passes its probe or its first attempt fails.",
        discussion: """
        Starts the supervisor in the background if none runs (it outlives this command and the terminal), \
        asks it for the tunnels, and waits. Exits 0 when every tunnel is up; otherwise non-zero with each \
        tunnel's reason in ssh's words, as soon as each has one: at once for a failure fwd does not retry (a \
        refused login, a changed host key), and after the first failed attempt for one it retries (connection \
        refused, a port in use). A retried tunnel stays wanted: the line says when the next try is, and \
        `fwd down NAME` stops it. With --wait, waits through the retries until every tunnel is up or the \
        timeout passes, as scripts want. Example: fwd up intranet-wiki work
        """
    )

    @OptionGroup var selection: TunnelSelection<UpCommand>

    @Flag(help: "Wait through retries until every tunnel is up (or --timeout passes), instead of returning after a failed attempt.")
    var wait = false

    func run() async throws {
        let context = Context.current()
        let config = try context.loadConfig()
        if selection.names.isEmpty && !selection.all {
            FileHandle.standardError.write(Data(Self.choices(config).utf8))
            throw ExitCode.validationFailure
        }
        let tunnels = selection.all ? config.tunnels : try config.resolve(selection.names)
        guard !tunnels.isEmpty else { throw CommandFailure("no tunnels are configured in \(config.path)") }
        // The supervisor starts while this writes what it wants; its answer to `watch` reads that.
        let starting = try Control.startSupervisor(context.paths, executable: Executable.path, environment: ProcessInfo.processInfo.environment)
        let store = try Store(path: context.paths.database)
        try store.setDesired(.up, tunnels: tunnels)
        try starting?.waitUntilReady()
        let request = ControlRequest(op: .watch, config: config.path, names: tunnels.map(\.name), prompt: Waiter.canPrompt)
        let client = try Waiter.watch(request, paths: context.paths, starting: true)
        let outcome: [String]
        do {
            outcome = try Waiter(names: tunnels.map(\.name), quiet: selection.quiet)
                .wait(client, until: { $0 == .up }, failFast: { [.failed, .needsAuth, .degraded].contains($0) },
                      retries: wait ? .mention : .settle, timeout: selection.timeout)
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

extension UpCommand: SelectsAllTunnels {
    typealias Scope = NamesOrAll<UpCommand>
    static var allHelp: String { "Bring up every configured tunnel." }
    static var timeout: (seconds: Double, help: String) { (30, "Seconds to wait for every tunnel to pass its probe.") }
    static var listsWhenEmpty: Bool { true }

    /// What `fwd up` with no names says: what it can bring up.
    static func choices(_ config: FwdConfig) -> String {
        guard !config.tunnels.isEmpty else {
            return "fwd up: no tunnels are configured in \(config.path); `fwd add NAME --host HOST -L PORT:TARGET:PORT` adds one\n"
        }
        var text = "fwd up: name tunnels or groups to bring up (shell-style patterns like 'db-*' too), or give --all\n"
        text += "  tunnels: \(config.tunnels.map(\.name).joined(separator: ", "))\n"
        if !config.groups.isEmpty {
            text += "  groups:  \(config.groups.map { "\($0.name) (\($0.members.joined(separator: ", ")))" }.joined(separator: "; "))\n"
        }
        return text
    }
}
