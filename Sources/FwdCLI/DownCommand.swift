import ArgumentParser
import Foundation
import FwdCore

struct DownCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "down",
        abstract: "Take tunnels or groups down.",
        discussion: "Forwards are cancelled on the live master; a host's master exits with its last tunnel. Example: fwd down --all"
    )

    @OptionGroup var selection: TunnelSelection<DownCommand>

    func run() async throws {
        let context = Context.current()
        let store: Store
        do {
            store = try Store(path: context.paths.database)
        } catch let error as StoreError where error.isUnusableDatabase && selection.all {
            try await downWithoutRows(context.paths, because: "\(error.problem); nothing was recorded. To use fwd again: \(error.advice ?? "")")
            return
        }
        let targets: [TunnelStatus]
        if selection.all {
            do {
                targets = try store.tunnels()
            } catch {
                // A row this fwd cannot read (a newer fwd's) must not keep anything up.
                try await downWithoutRows(context.paths, because: "\(error)")
                return
            }
        } else {
            targets = try Self.targets(selection.names, context: context, store: store)
        }
        let left = try Self.takeDown(targets, store: store, context: context, timeout: selection.timeout)
        if !left.isEmpty {
            for line in left { FileHandle.standardError.write(Data("\(line)\n".utf8)) }
            throw ExitCode(1)
        }
        try report(targets.map(\.name), store: store)
    }

    /// The rows `names` mean: tunnels and groups of the config, and any tunnel the store still has (one the
    /// file no longer lists may still run). A tunnel never brought up has no row yet; it gets one, down.
    static func targets(_ names: [String], context: Context, store: Store) throws -> [TunnelStatus] {
        let config = Result { try context.loadConfig() }
        var targets: [TunnelStatus] = []
        for name in names {
            if let wanted = try? config.get().resolve([name]) {
                let known = try store.tunnels(named: wanted.map(\.name))
                targets += wanted.map { t in
                    known[t.name] ?? TunnelStatus(name: t.name, host: t.host, desired: .down, state: .down, since: Date(),
                                                  forwards: ForwardStatus.initial(for: t), updatedAt: Date())
                }
            } else if let row = try store.tunnel(name) {
                targets.append(row)
            } else {
                // Not in the store either: the config's own error (a typo's suggestion, or why it does not parse).
                _ = try config.get().resolve([name])
            }
        }
        return targets.reduce(into: []) { unique, t in if !unique.contains(where: { $0.name == t.name }) { unique.append(t) } }
    }

    /// Wants `targets` down and waits up to `timeout` seconds for the supervisor to take them down; the lines
    /// of those that did not get there.
    static func takeDown(_ targets: [TunnelStatus], store: Store, context: Context, timeout: Double) throws -> [String] {
        try store.setDesired(.down, recorded: targets)
        guard let client = try? Waiter.watch(ControlRequest(op: .watch, config: context.paths.config, names: targets.map(\.name)),
                                             paths: context.paths, starting: false) else {
            // Nothing supervises: nothing can be running. Say so in the state rather than leave stale rows.
            for t in targets { try store.transition(t.name, to: .down, pid: nil, error: nil, message: "taken down") }
            return []
        }
        return try Waiter(names: targets.map(\.name), quiet: true)
            .wait(client, until: { $0 == .down || $0 == .failed }, failFast: { _ in false }, timeout: timeout)
    }

    /// Everything goes down, so no row is needed to know what (`Control.stopWithoutStore`,
    /// docs/reliability.md, "State database").
    func downWithoutRows(_ paths: FwdPaths, because why: String) async throws {
        let (done, failed) = await Control.stopWithoutStore(paths)
        if !selection.quiet {
            done.forEach { print($0) }
            print(done.isEmpty ? "nothing was running" : "every tunnel is down")
        }
        FileHandle.standardError.write(Data("fwd down: \(why)\n".utf8))
        if failed { throw ExitCode(1) }
    }

    func report(_ names: [String], store: Store) throws {
        guard !selection.quiet else { return }
        for name in names { print("\(name): \(try store.tunnel(name)?.state.rawValue ?? "down")") }
    }
}

extension DownCommand: SelectsAllTunnels {
    typealias Scope = NamesOrAll<DownCommand>
    static var nameCompletion: CompletionKind { Completions.tunnelsToTakeDown }
    static var allHelp: String { "Take every tunnel down." }
    static var timeout: (seconds: Double, help: String) { (15, "Seconds to wait.") }
}
