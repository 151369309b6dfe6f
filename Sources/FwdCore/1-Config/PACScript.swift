/// A proxy auto-config script (`fwd pac`): the names of each tunnel's `domains` go to that tunnel's SOCKS
/// port, everything else goes DIRECT. The script never resolves a name (no dnsResolve, isInNet or
/// isResolvable): a name the local DNS does not know, or must not learn, reaches the proxy as a name and is
/// resolved on the far side.
package enum PACScript {
    package struct Route: Sendable, Equatable {
        package var tunnel: String
        /// Validated by `Validation.domainProblem`: letters, digits, '-', '.' and a leading "*.".
        package var domains: [String]
        /// host:port of the tunnel's SOCKS listener, as a browser connects to it.
        package var proxy: String

        package init(tunnel: String, domains: [String], proxy: String) {
            self.tunnel = tunnel
            self.domains = domains
            self.proxy = proxy
        }

        /// The route of a tunnel with domains and a -D forward.
        package init?(_ tunnel: Tunnel) {
            guard !tunnel.domains.isEmpty, let url = tunnel.socksForward?.socksURL else { return nil }
            self.init(tunnel: tunnel.name, domains: tunnel.domains, proxy: String(url.dropFirst("socks5h://".count)))
        }
    }

    package static func render(_ routes: [Route], source: String) -> String {
        var out = """
        // Written by `fwd pac` from \(source.unicodeScalars.allSatisfy { (0x20..<0x7F).contains($0.value) } ? source : "fwd.toml").
        // The names below go through the named tunnel's SOCKS proxy and are resolved on the far side;
        // this script never resolves a name itself. Everything else goes DIRECT.
        function FindProxyForURL(url, host) {
          host = host.toLowerCase();
          if (host.charAt(host.length - 1) === ".") host = host.substring(0, host.length - 1);

        """
        for route in routes {
            let tests = route.domains.map { domain in
                domain.hasPrefix("*.") ? "shExpMatch(host, \"\(domain)\")" : "host === \"\(domain)\""
            }
            out += "  // tunnel \(route.tunnel)\n"
            out += "  if (\(tests.joined(separator: " ||\n      ")))\n"
            out += "    return \"SOCKS5 \(route.proxy); SOCKS \(route.proxy)\";\n"
        }
        out += "  return \"DIRECT\";\n}\n"
        return out
    }
}
