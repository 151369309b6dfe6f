import ArgumentParser
import FwdCore

struct ConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Show or install the ssh_config fragment fwd generates.",
        subcommands: [Print.self, Install.self, Uninstall.self, Path.self]
    )

    struct Print: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the ssh_config fragment: a Host block per fwd host and per tunnel.",
            discussion: "Example: fwd config print"
        )

        func run() async throws {
            let context = Context.current()
            print(try await SSHConfigFiles.write(try context.loadConfig(), paths: context.paths), terminator: "")
        }
    }

    struct Install: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write the fragment and add one Include line at the top of ~/.ssh/config.",
            discussion: """
            After this, plain ssh, scp, rsync and git know fwd's hosts and tunnels: `ssh -N intranet-wiki` brings \
            the tunnel's forwards up. ~/.ssh/config is backed up first; running it again changes nothing. \
            $FWD_SSH_CONFIG names another file to edit.
            """
        )

        func run() async throws {
            let context = Context.current()
            try await SSHConfigFiles.write(try context.loadConfig(), paths: context.paths)
            switch try SSHConfigFiles.install(paths: context.paths) {
            case .alreadyInstalled:
                print("\(context.paths.userSSHConfig) already includes \(context.paths.fragment); fragment refreshed.")
            case .installed(let backup):
                print("Added `\(SSHConfigFiles.includeLine(paths: context.paths))` to the top of \(context.paths.userSSHConfig).")
                if let backup { print("Backup: \(backup)") }
            }
        }
    }

    struct Uninstall: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove the Include line that `fwd config install` added.",
            discussion: "Only that line is removed; everything else in the file stays."
        )

        func run() async throws {
            let paths = Context.current().paths
            if try SSHConfigFiles.uninstall(paths: paths) {
                print("Removed fwd's Include line from \(paths.userSSHConfig).")
            } else {
                print("\(paths.userSSHConfig) has no fwd Include line; nothing to do.")
            }
        }
    }

    struct Path: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print where fwd's files are.",
            discussion: "Example: $EDITOR \"$(fwd config path)\""
        )

        @Flag(help: "Also print the state directory, fragment and ssh_config paths.")
        var all = false

        func run() async throws {
            let paths = Context.current().paths
            guard all else {
                print(paths.config)
                return
            }
            print("config      \(paths.config)")
            print("state       \(paths.stateDirectory)")
            print("fragment    \(paths.fragment)")
            print("ssh_config  \(paths.userSSHConfig)")
            print("sockets     \(paths.controlDirectory)")
        }
    }
}

struct TemplatesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "templates",
        abstract: "List the tunnel presets for `fwd add NAME --template PRESET`.",
        discussion: "Example: fwd add db --template postgres --host office --target db.lan"
    )

    @Flag(help: "Print JSON.")
    var json = false

    func run() async throws {
        let presets = Presets.all(in: try Context.templates())
        if json {
            struct Item: Encodable { var name: String; var summary: String; var defaults: [String: String] }
            print(try JSONOutput.encode(presets.map { Item(name: $0.name, summary: $0.summary, defaults: $0.defaults) }))
            return
        }
        print(Table.render([["PRESET", "DEFAULTS", "WHAT IT IS FOR"]] + presets.map { p in
            [p.name, p.defaults.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "), p.summary]
        }), terminator: "")
    }
}
