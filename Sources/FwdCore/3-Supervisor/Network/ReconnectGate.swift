import Foundation

/// When a lost master may be started again (issue 9): once the backoff is over, and as soon as the SSH
/// server's port accepts again after having been seen closed, so a restarted server is back in use within a
/// poll interval instead of a whole backoff step. While the port does not accept, no ssh is started even once
/// the backoff is over (for up to `patience` more seconds): one started into a dead path sits in SYN retries
/// until ConnectTimeout and misses the path's return.
enum ReconnectGate {
    /// The SSH server's address when fwd can reach it directly (no ProxyJump/ProxyCommand in the way).
    static func serverAddress(_ resolved: ResolvedHost?) -> (host: String, port: Int)? {
        guard let r = resolved, r.value("proxyjump") == nil || r.value("proxyjump") == "none",
              r.value("proxycommand") == nil || r.value("proxycommand") == "none",
              let hostname = r.value("hostname"), let port = Int(r.value("port") ?? "22") else { return nil }
        return (hostname, port)
    }

    /// Returns when a reconnect is due; returns early (and the caller reports nothing) when the task is
    /// cancelled, which the executor does when the wait's generation is over.
    static func wait(delay: Double, patience: Double, outage: Double, target: (host: String, port: Int)?) async {
        let deadline = ContinuousClock.now + .seconds(delay)
        // Resolved once, as ssh would: a HostName is usually a name, and the poll must not ask DNS every 20 ms.
        // The port counts as open when any of the name's addresses accepts (ssh may use either family).
        let addresses = if let target { await Resolver.numericHosts(target.host) } else { [String]() }
        guard let target, !addresses.isEmpty else {
            try? await Task.sleep(for: .seconds(delay))
            return
        }
        // Poll fast while an outage is young (a restarting server), then ease off so a host that is gone for
        // hours does not get fifty connection attempts a second.
        let interval = outage < 10 ? 20 : outage < 60 ? 250 : 1000
        var sawDown = false
        while !Task.isCancelled {
            var open = false
            for address in addresses where !open {
                // Non-blocking, on the reactor: no thread per attempt.
                open = (try? await ProbeSocket.connect(to: .tcp(host: address, port: target.port), until: .now + .milliseconds(200))) != nil
            }
            if open && (sawDown || ContinuousClock.now >= deadline) { return }
            if !open && ContinuousClock.now >= deadline + .seconds(patience) { return }
            sawDown = sawDown || !open
            try? await Task.sleep(for: .milliseconds(open ? max(50, interval) : interval))
        }
    }
}
