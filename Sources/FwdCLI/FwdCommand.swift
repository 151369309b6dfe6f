import ArgumentParser
import Foundation
import FwdCore

package struct FwdCommand: AsyncParsableCommand {
    package static let configuration = CommandConfiguration(
        commandName: "fwd",
        abstract: "Named SSH port forwards you bring up with one command.",
        discussion: """
        fwd keeps tunnels written like ssh -L/-R/-D arguments in a TOML file and runs them through your own \
        OpenSSH client, so your keys, agent, ProxyJump and every ssh_config setting keep working.
        Config: $FWD_CONFIG, else $XDG_CONFIG_HOME/fwd/fwd.toml, else ~/.config/fwd/fwd.toml.
        """,
        version: FwdVersion.current,
        subcommands: [
            UpCommand.self, DownCommand.self, StatusCommand.self, TopCommand.self, LogsCommand.self, CheckCommand.self,
            ListCommand.self, ShowCommand.self, PACCommand.self, AddCommand.self, RemoveCommand.self, ReloadCommand.self,
            RunCommand.self, DaemonCommand.self, SessionCommand.self, DemoCommand.self, ReconnectCommand.self,
            ConfigCommand.self, TemplatesCommand.self, EditCommand.self, DoctorCommand.self, ServiceCommand.self,
            MetricsCommand.self, AskpassCommand.self,
        ]
    )

    package init() {}
}

/// What every command works with: the paths, read once from the environment.
struct Context {
    var paths: FwdPaths

    static func current() -> Context { Context(paths: FwdPaths.fromEnvironment()) }

    func loadConfig() throws -> FwdConfig { try ConfigLoader.load(path: paths.config) }

    /// Rewrites the ssh_config files from fwd.toml as it now is, so plain `ssh NEW` knows a tunnel the moment
    /// a command adds it (a running supervisor does the same within a second of any save). A failure is said,
    /// not fatal: the config is already saved.
    func refreshSSHConfig() async {
        do {
            try await SSHConfigFiles.write(try loadConfig(), paths: paths)
        } catch {
            FileHandle.standardError.write(Data("warning: fwd's ssh_config was not updated, so plain ssh may not know this change yet: \(error)\n".utf8))
        }
    }

    /// fwd's templates/ folder, found from this binary's real path (argv[0] is just "fwd" when run from PATH).
    static func templates() throws -> String { try Presets.directory(executable: Executable.path) }
}

/// The entry point. Parses and runs the command asynchronously (calling `main()` from top-level code would
/// pick ParsableCommand's synchronous overload).
package enum FwdMain {
    package static func run() async -> Never {
        Posix.forbidCoreDumps()
        // ssh runs SSH_ASKPASS with the prompt as the only argument: answer before any parsing or setup.
        if let prompt = AskpassCommand.promptFromSSH(CommandLine.arguments, environment: ProcessInfo.processInfo.environment) {
            let code = AskpassCommand.relay(prompt: prompt)
            FwdCommand.exit(withError: code == 0 ? nil : ExitCode(code))
        }
        if let typo = unknownSubcommand(CommandLine.arguments) {
            FileHandle.standardError.write(Data("Error: \(typo)\n".utf8))
            FwdCommand.exit(withError: ExitCode.validationFailure)
        }
        do {
            var command = try FwdCommand.parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
            FwdCommand.exit()
        } catch {
            FwdCommand.exit(withError: error)
        }
    }
}

extension FwdMain {
    /// "unknown command "stauts"; did you mean "status"?" for a first word that names no subcommand (fwd takes
    /// no arguments of its own), instead of argument-parser's usage dump.
    static func unknownSubcommand(_ arguments: [String]) -> String? {
        guard let word = arguments.dropFirst().first, !word.hasPrefix("-") else { return nil }
        let names = FwdCommand.configuration.subcommands.map { $0._commandName } + ["help"]
        guard !names.contains(word) else { return nil }
        let hint = ConfigError.closest(to: word, in: names).map { "; did you mean \"\($0)\"?" } ?? ""
        return "unknown command \"\(word)\"\(hint) (`fwd --help` lists the commands)"
    }
}

/// A run-time failure of a command, printed as `Error: …` with exit status 1. (argument-parser prints a
/// usage banner and exits 64 for a `ValidationError`, which is for bad arguments only.)
struct CommandFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
