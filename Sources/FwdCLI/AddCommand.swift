import ArgumentParser
import Foundation
import FwdCore

struct AddCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add",
        abstract: "Add a tunnel to the config, from forward specs or a preset.",
        discussion: """
        Examples:
          fwd add wiki --host office -L 8080:wiki.lan:80 --probe http
          fwd add db --template postgres --host office --target db.lan
          fwd add files --template ftp --host office --target ftp.lan --passive 60000-60009
        The new [tunnels.NAME] table is appended; the rest of the file is left as it was.

        Probes (--probe):
        \(ProbeKind.allCases.map { "  \($0.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0))\($0.summary)" }.joined(separator: "\n"))
        Protocol probes, banner and http test local and remote forwards; a port that answers another \
        protocol reads degraded and says so.
        """
    )

    @Argument(help: "The new tunnel's name: letters, digits, '.', '_' and '-'.", completion: .list([]))
    var name: String

    @Option(help: "A [hosts] name, an ssh alias or user@host[:port].", completion: Completions.hosts)
    var host: String

    @Option(name: .customShort("L"), help: ArgumentHelp("A local forward, as for ssh -L; ports may be ranges (60000-60009:ftp.lan:60000-60009).", valueName: "spec"))
    var local: [String] = []

    @Option(name: .customShort("R"), help: ArgumentHelp("A remote forward, as for ssh -R; ports may be ranges.", valueName: "spec"))
    var remote: [String] = []

    @Option(name: .customShort("D"), help: ArgumentHelp("A dynamic (SOCKS) forward, as for ssh -D.", valueName: "spec"))
    var dynamic: [String] = []

    @Option(help: ArgumentHelp("How each forward is checked: \(ProbeKind.allCases.map(\.rawValue).joined(separator: ", ")) (default: by forward type; see the list above).",
                               valueName: "probe"),
            completion: .list(ProbeKind.allCases.map(\.rawValue)))
    var probe: String?

    @Option(name: .customLong("probe-target"),
            help: ArgumentHelp("For a dynamic forward: HOST:PORT (as the server sees it) the probe CONNECTs to through the proxy.", valueName: "host:port"))
    var probeTarget: String?

    @Flag(name: .customLong("public"), help: "Allow binding addresses other than loopback.")
    var isPublic = false

    @Option(help: "A preset from `fwd templates` instead of -L/-R/-D.", completion: Completions.presets)
    var template: String?

    @Option(help: "With --template: the host the forward reaches (default: the preset's).")
    var target: String?

    @Option(help: "With --template: the listening port (default: the preset's).")
    var port: Int?

    @Option(name: .customLong("target-port"), help: "With --template: the target's port (default: the preset's).")
    var targetPort: Int?

    @Option(help: ArgumentHelp("With --template ftp: the server's fixed passive port range, forwarded port for port.", valueName: "first-last"))
    var passive: String?

    func validate() throws {
        if template == nil && local.isEmpty && remote.isEmpty && dynamic.isEmpty {
            throw ValidationError("give at least one of -L, -R, -D, or --template")
        }
        if template != nil && !(local.isEmpty && remote.isEmpty && dynamic.isEmpty) {
            throw ValidationError("use either --template or -L/-R/-D, not both")
        }
        if template == nil && (target != nil || port != nil || targetPort != nil || passive != nil) {
            throw ValidationError("--target, --port, --target-port and --passive go with --template")
        }
        if template == nil, let p = Validation.nameProblem(name) { throw ValidationError(p) }
        if let probe, ProbeKind(rawValue: probe) == nil {
            throw ValidationError("unknown probe \"\(probe)\"; expected one of: \(ProbeKind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() async throws {
        let paths = Context.current().paths
        let path = paths.config
        let table: String
        if let template {
            let preset = try Presets.named(template, in: try Context.templates())
            table = try preset.render(.init(name: name, host: host, target: target, port: port, targetPort: targetPort, passive: passive))
        } else {
            var written: [ForwardRange] = []
            for (kind, specs) in [(ForwardKind.local, local), (.remote, remote), (.dynamic, dynamic)] {
                for s in specs { written.append(try ForwardRange.parse(s, kind: kind)) }
            }
            var tunnel = Tunnel(name: name, host: host, written: written)
            if let probe {
                tunnel.probe = ProbeKind(rawValue: probe)
            }
            if let probeTarget {
                switch SocksTarget.parse(probeTarget) {
                case .success(let target): tunnel.probeTarget = target
                case .failure(let problem): throw ValidationError("--probe-target \(problem.description)")
                }
            }
            tunnel.isPublic = isPublic
            table = ConfigEditor.table(for: tunnel)
        }
        let existing = FileSystem.read(path) ?? ""
        // A TOML file that cannot tell us where our error is: report against a name the user recognises.
        let edited = try ConfigEditor.appending(table, named: name, to: existing, path: path)
        try ConfigEditor.save(edited.text, to: path)
        await Context.current().refreshSSHConfig()
        print("Added tunnel \(name) to \(path). Bring it up with `fwd up \(name)`.")
        // A name ssh already knows: said, not refused (docs/configuration.md, "Names fwd shares with ssh").
        for clash in await Doctor(paths: paths).nameClashes([name]) {
            FileHandle.standardError.write(Data("warning: \(clash.message)\n  fix: \(clash.fix ?? "")\n".utf8))
        }
    }
}

struct RemoveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rm",
        abstract: "Remove a tunnel's table from the config; a running tunnel is taken down first.",
        discussion: "Example: fwd rm intranet-wiki. Refused while a group still lists the tunnel."
    )

    @Argument(help: "The tunnel name.", completion: Completions.tunnels)
    var name: String

    func run() async throws {
        let context = Context.current()
        let path = context.paths.config
        guard let existing = FileSystem.read(path) else {
            throw ConfigError.io(path: path, reason: "no config file; nothing to remove")
        }
        let edited = try ConfigEditor.removing(name, from: existing, path: path)
        // Down before the table goes, so no forward outlives its definition; the row goes with the table.
        let store = try Store(path: context.paths.database)
        if let row = try store.tunnel(name), row.desired == .up || row.state != .down {
            let left = try DownCommand.takeDown([row], store: store, context: context, timeout: 15)
            guard left.isEmpty else {
                for line in left { FileHandle.standardError.write(Data("\(line)\n".utf8)) }
                throw CommandFailure("\(name) did not go down, so it stays in \(path); try `fwd down \(name)`, then `fwd rm \(name)` again")
            }
            print("\(name): down")
        }
        try ConfigEditor.save(edited, to: path)
        try store.remove(name)
        await context.refreshSSHConfig()
        print("Removed tunnel \(name) from \(path).")
    }
}
