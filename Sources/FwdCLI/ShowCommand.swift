import ArgumentParser
import Foundation
import FwdCore

struct ShowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show a tunnel's resolved forwards and the exact ssh commands fwd would run.",
        discussion: "Example: fwd show intranet-wiki"
    )

    @Argument(help: "The tunnel name.", completion: Completions.tunnels)
    var name: String

    @Flag(help: "Print JSON.")
    var json = false

    func run() async throws {
        let context = Context.current()
        let config = try context.loadConfig()
        guard let tunnel = config.tunnel(named: name) else {
            throw ConfigError.unknownName(name, suggestion: ConfigError.closest(to: name, in: config.tunnels.map(\.name)))
        }
        let paths = context.paths
        let destination = Destination(tunnel.host)
        try await SSHConfigFiles.write(config, paths: paths)
        let resolved = try await SSHResolver.resolve(destination, paths: paths)
        let socket = paths.controlSocket(for: tunnel.host)
        let liveness = SSHCommand.Liveness(config.hostEntry(for: tunnel))
        var commands: [(String, SSHCommand)] = [
            // As the supervisor runs it: without BatchMode, so a login that needs a person can ask (fwd is its askpass).
            ("master", .master(ssh: paths.ssh, config: paths.rootSSHConfig, destination: destination, socket: socket, liveness: liveness,
                               batchMode: false)),
        ]
        for f in tunnel.forwards { commands.append(("add", .mux(ssh: paths.ssh, socket: socket, .forward(f)))) }
        commands.append(("check", .mux(ssh: paths.ssh, socket: socket, .check)))
        for f in tunnel.forwards { commands.append(("remove", .mux(ssh: paths.ssh, socket: socket, .cancel(f)))) }
        commands.append(("stop", .mux(ssh: paths.ssh, socket: socket, .exit)))

        if json {
            struct Shown: Encodable {
                var tunnel: TunnelJSON
                var destination: String
                @JSONNull var hostname: String?
                @JSONNull var user: String?
                @JSONNull var port: String?
                var control_path: String
                var commands: [String: [[String]]]
            }
            var byRole: [String: [[String]]] = [:]
            for (role, c) in commands { byRole[role, default: []].append(c.argv) }
            print(try JSONOutput.encode(Shown(tunnel: TunnelJSON(tunnel, config: config), destination: destination.host,
                                              hostname: resolved.value("hostname"), user: resolved.value("user"),
                                              port: resolved.value("port"), control_path: socket, commands: byRole)))
            return
        }
        print("tunnel   \(tunnel.name)")
        print("host     \(tunnel.host) → \(resolved.value("user") ?? "?")@\(resolved.value("hostname") ?? "?"):\(resolved.value("port") ?? "22")")
        print("socket   \(socket)")
        print("forwards")
        for f in tunnel.forwards {
            print("  \(f.kind.flag) \(f.sshArgument)  (probe: \(tunnel.probe(for: f).rawValue))")
        }
        print("ssh commands")
        for (role, c) in commands { print("  \(role.padding(toLength: 7, withPad: " ", startingAt: 0)) \(c)") }
    }
}
