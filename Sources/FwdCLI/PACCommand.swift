import ArgumentParser
import FwdCore

struct PACCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pac",
        abstract: "Print a proxy auto-config (PAC) script that sends each tunnel's domains through its SOCKS port.",
        discussion: """
        A dynamic tunnel lists the names it carries: domains = ["*.corp.lan", "wiki.example.com"]. Those names \
        go to SOCKS5 127.0.0.1:PORT and are resolved on the far side; everything else goes DIRECT. \
        Example: chromium --proxy-pac-url="data:application/x-ns-proxy-autoconfig;base64,$(fwd pac | base64 -w0)" \
        (Chromium ignores file:// PAC URLs; Firefox takes file:///PATH after fwd pac > PATH). \
        docs/scenarios.md says how to serve it over http without exposing the config directory.
        """
    )

    @Argument(help: "Tunnel or group names (default: every tunnel with domains).", completion: Completions.tunnelsAndGroups)
    var names: [String] = []

    func run() async throws {
        let config = try Context.current().loadConfig()
        let tunnels = names.isEmpty ? config.tunnels.filter { !$0.domains.isEmpty } : try config.resolve(names)
        if tunnels.isEmpty {
            throw ConfigError.refused("no tunnel in \(config.path) has domains; add domains = [\"*.corp.lan\"] to a tunnel with a dynamic forward")
        }
        var routes: [PACScript.Route] = []
        for tunnel in tunnels {
            guard let route = PACScript.Route(tunnel) else {
                throw ConfigError.refused("tunnel \(tunnel.name) has no domains; add domains = [\"*.corp.lan\"] (the names it should carry) to [tunnels.\(tunnel.name)], beside its dynamic forward")
            }
            routes.append(route)
        }
        print(PACScript.render(routes, source: config.path), terminator: "")
    }
}
