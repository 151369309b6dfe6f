import ArgumentParser
import Foundation
import FwdCore

struct SessionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ssh",
        abstract: "Run ssh to a host with fwd's config, riding its master (agent/X11 forwarding as the host asks).",
        discussion: "Example: fwd ssh office -- uptime"
    )

    @Argument(help: "A [hosts] name, an ssh alias or user@host[:port].", completion: Completions.hosts)
    var host: String

    @Argument(parsing: .postTerminator, help: "Arguments for ssh after `--` (a remote command, or ssh options).")
    var arguments: [String] = []

    func validate() throws {
        if let p = Validation.hostProblem(host) { throw ValidationError(p) }
    }

    func run() async throws {
        let context = Context.current()
        let config = try context.loadConfig()
        try await SSHConfigFiles.write(config, paths: context.paths)
        let destination = Destination(host)
        let socket = context.paths.controlSocket(for: host)
        let command = SSHCommand.session(ssh: context.paths.ssh, config: context.paths.rootSSHConfig,
                                         socket: FileSystem.exists(socket) ? socket : nil,
                                         destination: destination, extra: arguments)
        if let dir = command.workingDirectory, chdir(dir) != 0 {
            throw CommandFailure("cannot enter \(dir): \(String(cString: strerror(errno)))")
        }
        let argv = command.argv.map { strdup($0) } + [nil]
        execvp(command.executable, argv)
        throw CommandFailure("cannot run \(command.executable): \(String(cString: strerror(errno)))")
    }
}
