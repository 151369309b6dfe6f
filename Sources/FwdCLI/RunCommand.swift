import ArgumentParser
import Foundation
import FwdCore

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Supervise the named tunnels in the foreground, without a daemon; Ctrl-C takes them down.",
        discussion: "Example: fwd run intranet-wiki socks"
    )

    @Argument(help: "Tunnel or group names.", completion: Completions.tunnelsAndGroups)
    var names: [String]

    func run() async throws {
        let context = Context.current()
        let tunnels = try context.loadConfig().resolve(names)
        let names = Set(tunnels.map(\.name))
        let service = SupervisorService(paths: context.paths, mode: .foreground(names: tunnels.map(\.name)), options: .withAskpass(),
                                        prompter: Waiter.canPrompt ? TerminalPrompter() : nil)
        // The supervisor runs in this process: its events come straight from its store writer.
        try await service.run(onEvent: { e in
            if e.tunnel.map(names.contains) ?? true { EventLine.print(e) }
        })
    }
}
