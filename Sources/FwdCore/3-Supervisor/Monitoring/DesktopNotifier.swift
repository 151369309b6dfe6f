import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Tells the person at the desktop when a tunnel leaves `up`, when it comes back, and when a login waits for them
/// with no terminal watching (`needs-auth`), over the session D-Bus (org.freedesktop.Notifications.Notify). fwd
/// links no D-Bus library: it runs `gdbus call` through the process layer, with each value a quoted GVariant
/// text argument (argv, no shell). At most one notification per tunnel per `interval` (30 s): changes in between
/// are held, and one summary of them follows when the interval ends. `notify = false` turns it off.
/// On macOS the same notices go to the system's Notification Center through `osascript`'s `display notification`,
/// with the texts as script arguments, never spliced into the script (built here on Linux, unit-tested for its
/// arguments; not run: no macOS machine here, docs/usage.md, "Monitoring").
package final class DesktopNotifier: Sendable {
    private struct PerTunnel {
        var lastSent: ContinuousClock.Instant?
        /// Changes held back since `lastSent`, and the newest of them.
        var held = 0
        var latest: StateChange?
        var summaryDue = false
        /// fwd told (or held) that the tunnel left up: its coming back is news too.
        var outage = false
    }

    private struct State {
        var settings = MonitoringSettings()
        var tunnels: [String: PerTunnel] = [:]
    }

    private let interval: Duration
    private let writer: StoreWriter
    private let state = Locked(State())
    /// How gdbus reaches the session bus (on macOS, empty: osascript needs none); nil: there is none, and
    /// nothing is sent.
    private let bus: [String]?

    init(writer: StoreWriter, interval: Duration, environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.writer = writer
        self.interval = interval
        #if os(macOS)
        bus = []
        return
        #endif
        if let address = environment["DBUS_SESSION_BUS_ADDRESS"], !address.isEmpty {
            bus = ["--address", address]
        } else if FileSystem.exists("/run/user/\(getuid())/bus") {
            // A supervisor started by systemd --user without the variable still has the user's bus here.
            bus = ["--address", "unix:path=/run/user/\(getuid())/bus"]
        } else {
            bus = nil
        }
    }

    func configure(_ config: FwdConfig) {
        state.withLock { $0.settings = config.monitoring }
    }

    /// Called on the store writer's thread: decides at once, sends off it.
    func changed(_ changes: [StateChange]) {
        guard bus != nil else { return }
        let now = ContinuousClock.now
        var send: [(String, String)] = []
        var schedule: [String] = []
        state.withLock { s in
            for c in changes where s.settings.notifies(c.tunnel) {
                var t = s.tunnels[c.tunnel] ?? PerTunnel()
                // A first `up` after `fwd up` is not news; leaving up, coming back after that, and a login waiting are.
                let leaves = c.from == .up && c.to != .up, back = c.to == .up && t.outage
                guard leaves || back || c.to == .needsAuth else { continue }
                if leaves { t.outage = true }
                if back { t.outage = false }
                if let last = t.lastSent, now - last < interval {
                    t.held += 1
                    t.latest = c
                    if !t.summaryDue {
                        t.summaryDue = true
                        schedule.append(c.tunnel)
                    }
                } else {
                    t.lastSent = now
                    send.append(Self.words(c))
                }
                s.tunnels[c.tunnel] = t
            }
        }
        for (summary, body) in send { post(summary, body) }
        for tunnel in schedule { summarize(tunnel) }
    }

    static func words(_ c: StateChange) -> (summary: String, body: String) {
        switch c.to {
        case .needsAuth:
            return ("fwd: \(c.tunnel) needs a login", "Logging in to \(c.host) again needs you: run `fwd up \(c.tunnel)` to log in.")
        case .up:
            return ("fwd: \(c.tunnel) is up again", "Every forward passes its probe.")
        default:
            return ("fwd: \(c.tunnel) is \(c.to.rawValue)", c.reason)
        }
    }

    /// Once the interval since the last notification ends: one summary of what was held back.
    private func summarize(_ tunnel: String) {
        let (state, interval) = (self.state, self.interval)
        Task.detached { [self] in
            let wait = state.withLock { s in s.tunnels[tunnel]?.lastSent.map { $0 + interval - ContinuousClock.now } } ?? .zero
            if wait > .zero { try? await Task.sleep(for: wait) }
            let message: (String, String)? = state.withLock { s in
                guard var t = s.tunnels[tunnel], let latest = t.latest, t.held > 0 else { return nil }
                defer {
                    t.held = 0
                    t.latest = nil
                    t.summaryDue = false
                    t.lastSent = ContinuousClock.now
                    s.tunnels[tunnel] = t
                }
                return ("fwd: \(tunnel) changed state \(t.held) more time\(t.held == 1 ? "" : "s"); now \(latest.to.rawValue)",
                        Self.words(latest).body)
            }
            if let (summary, body) = message { post(summary, body) }
        }
    }

    /// The command that shows one notification: `gdbus call … Notify` on the session bus, or on macOS
    /// `osascript` with the texts as the script's arguments.
    static func command(summary: String, body: String, bus: [String], macOS: Bool) -> SSHCommand {
        if macOS {
            return SSHCommand(executable: "/usr/bin/osascript", arguments: [
                "-e", "on run argv", "-e", "display notification (item 2 of argv) with title \"fwd\" subtitle (item 1 of argv)",
                "-e", "end run", summary, body,
            ])
        }
        return SSHCommand(executable: "gdbus", arguments: ["call"] + bus + [
            "--dest", "org.freedesktop.Notifications", "--object-path", "/org/freedesktop/Notifications",
            "--method", "org.freedesktop.Notifications.Notify", "--",
            quoted("fwd"), "0", quoted(""), quoted(summary), quoted(body), "[]", "{}", "-1",
        ])
    }

    private func post(_ summary: String, _ body: String) {
        guard let bus else { return }
        #if os(macOS)
        let command = Self.command(summary: summary, body: body, bus: bus, macOS: true)
        #else
        let command = Self.command(summary: summary, body: body, bus: bus, macOS: false)
        #endif
        let writer = self.writer
        Task.detached {
            do {
                let r = try await CommandRunner.run(command, timeout: .seconds(5))
                if r.status != 0 {
                    writer.enqueue(.log(.error, tunnel: nil, host: nil, message: "desktop notification not sent: \(Validation.printable(r.stderr.trimmingCharacters(in: .whitespacesAndNewlines)))"))
                }
            } catch {
                writer.enqueue(.log(.error, tunnel: nil, host: nil, message: "desktop notification not sent: \(error) (gdbus, from libglib2.0-bin)"))
            }
        }
    }

    /// A GVariant text string: gdbus parses each argument as GVariant text, so a value is quoted, never bare.
    /// GVariant reads the same escapes as a TOML basic string (`\"`, `\\`, `\uXXXX`), so one quoting serves both.
    static func quoted(_ s: String) -> String { ConfigEditor.quote(s) }
}
