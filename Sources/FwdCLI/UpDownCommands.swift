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
        tunnel's reason. Example: fwd up intranet-wiki work
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
        let store = try Store(path: context.paths.database)
        try store.setDesired(.up, tunnels: tunnels.map { ($0.name, $0.host, ForwardStatus.initial(for: $0)) })
        try Control.ensureSupervisor(context.paths, executable: Executable.path, environment: ProcessInfo.processInfo.environment)
        let reply = try Control.request(ControlRequest(op: .reconcile, config: config.path, names: tunnels.map(\.name)), paths: context.paths)
        guard reply.ok else { throw ValidationError(reply.error ?? "the supervisor refused the request") }
        let outcome = try await Waiter(store: store, names: tunnels.map(\.name), quiet: quiet)
            .wait(until: { $0 == .up }, failFast: { $0 == .failed }, timeout: timeout)
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
        let targets: [(name: String, host: String, forwards: [ForwardStatus])]
        if all {
            targets = try store.tunnels().map { ($0.name, $0.host, $0.forwards) }
        } else {
            let config = try context.loadConfig()
            targets = try config.resolve(names).map { ($0.name, $0.host, ForwardStatus.initial(for: $0)) }
        }
        try store.setDesired(.down, tunnels: targets)
        guard Control.runningPID(context.paths) != nil else {
            // Nothing supervises: nothing can be running. Say so in the state rather than leave stale rows.
            for t in targets { try store.transition(t.name, to: .down, pid: nil, error: nil, message: "taken down") }
            report(targets.map(\.name), store: store)
            return
        }
        let reply = try Control.request(ControlRequest(op: .reconcile, config: context.paths.config), paths: context.paths)
        guard reply.ok else { throw ValidationError(reply.error ?? "the supervisor refused the request") }
        let left = try await Waiter(store: store, names: targets.map(\.name), quiet: true)
            .wait(until: { $0 == .down || $0 == .failed }, failFast: { _ in false }, timeout: timeout)
        if !left.isEmpty {
            for line in left { FileHandle.standardError.write(Data("\(line)\n".utf8)) }
            throw ExitCode(1)
        }
        report(targets.map(\.name), store: store)
    }

    func report(_ names: [String], store: Store) {
        guard !quiet else { return }
        for name in names { print("\(name): \((try? store.tunnel(name))?.state.rawValue ?? "down")") }
    }
}

/// Polls the store until every named tunnel reaches a wanted state, printing progress on a terminal.
struct Waiter {
    let store: Store
    let names: [String]
    let quiet: Bool

    /// Returns one line per tunnel that did not get there ("name: state — reason"), empty on success.
    func wait(until done: (TunnelState) -> Bool, failFast: (TunnelState) -> Bool, timeout: Double) async throws -> [String] {
        let tty = isatty(STDERR_FILENO) == 1 && !quiet
        let deadline = Date().addingTimeInterval(timeout)
        var shown: [String: TunnelState] = [:]
        while true {
            let current = try store.tunnels(named: names)
            let rows = names.map { current[$0] }
            var pending: [String] = []
            var failed = false
            for (name, row) in zip(names, rows) {
                let state = row?.state ?? .down
                if tty, shown[name] != state {
                    shown[name] = state
                    FileHandle.standardError.write(Data("  \(name): \(state.rawValue)\(row?.lastError.map { " — \($0)" } ?? "")\n".utf8))
                }
                if done(state) { continue }
                if failFast(state) { failed = true }
                pending.append("\(name): \(state.rawValue)\(row?.lastError.map { " — \($0)" } ?? "")")
            }
            if pending.isEmpty {
                if !quiet {
                    for (name, row) in zip(names, rows) { print("\(name): \(row?.state.rawValue ?? "down")\(Self.summary(row))") }
                }
                return []
            }
            let allSettled = zip(names, rows).allSatisfy { done($0.1?.state ?? .down) || failFast($0.1?.state ?? .down) }
            if (failed && allSettled) || Date() >= deadline {
                return pending.map { Date() >= deadline && !$0.contains(": failed") ? "\($0) (timed out after \(Int(timeout)) s)" : $0 }
            }
            // A read of a few rows; fine-grained because `fwd up` returning is what the user waits for.
            try await Task.sleep(for: .milliseconds(2))
        }
    }

    static func summary(_ row: TunnelStatus?) -> String {
        guard let row else { return "" }
        let ports = row.forwards.compactMap { f in f.allocatedPort.map { "\(f.spec) → server port \($0)" } }
        return ports.isEmpty ? "" : " (\(ports.joined(separator: ", ")))"
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
