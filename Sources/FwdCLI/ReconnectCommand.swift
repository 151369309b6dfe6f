import ArgumentParser
import Foundation
import FwdCore

struct ReconnectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reconnect",
        abstract: "Check the masters of tunnels now and restart those whose network path is gone.",
        discussion: """
        For your own hooks after a network change (a NetworkManager dispatcher script, an if-up script, a VPN \
        client's post-connect command): each master is asked for a round trip through its connection; one that \
        gets no answer is restarted at once, without backoff, and the command waits until its tunnels are up \
        again. fwd already does this by itself on Linux network events and after a resume from sleep. \
        Example: fwd reconnect --all
        """
    )

    @OptionGroup var selection: TunnelSelection<ReconnectCommand>

    func run() async throws {
        let context = Context.current()
        let selected = selection.all ? nil : try context.loadConfig().resolve(selection.names).map(\.name)
        guard Control.runningPID(context.paths) != nil else {
            // A hook may run while fwd is not in use: nothing runs, so nothing needs reconnecting.
            if !selection.quiet { FileHandle.standardError.write(Data("fwd: no supervisor is running; nothing to reconnect\n".utf8)) }
            return
        }
        let reply = try Control.request(ControlRequest(op: .reconnect, names: selected), paths: context.paths)
        let lines: [String] = if case .lines(let l) = reply { l } else { [] }
        if !selection.quiet {
            for line in lines { print(line) }
            if lines.isEmpty { print("no master runs for \(selected.map { $0.joined(separator: ", ") } ?? "any tunnel"); nothing to check") }
        }
        guard lines.contains(where: { $0.contains(": restarted") || $0.contains(": reconnecting") }) else { return }
        let store = try Store(path: context.paths.database)
        let waitFor = try selected ?? store.desiredUp().map(\.name)
        let client = try Waiter.watch(ControlRequest(op: .watch, config: context.paths.config, names: waitFor), paths: context.paths, starting: false)
        let outcome = try Waiter(names: waitFor, quiet: selection.quiet).wait(client, until: { $0 == .up }, failFast: { $0 == .failed }, retries: .mention, timeout: selection.timeout)
        if !outcome.isEmpty {
            for line in outcome { FileHandle.standardError.write(Data("\(line)\n".utf8)) }
            throw ExitCode(1)
        }
    }
}

extension ReconnectCommand: SelectsAllTunnels {
    typealias Scope = NamesOrAll<ReconnectCommand>
    static var allHelp: String { "Check every master." }
    static var timeout: (seconds: Double, help: String) { (30, "Seconds to wait for restarted tunnels to be up again.") }
}
