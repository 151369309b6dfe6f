import Foundation
import Testing
@testable import FwdCore

/// The systemd and launchd units `fwd service` renders from templates/.
@Suite struct ServiceUnitTests {
    static let templates = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("templates").path
    let paths = FwdPaths(config: "/home/alice/.config/fwd/fwd.toml", stateDirectory: "/home/alice/.local/state/fwd",
                         userSSHConfig: "/home/alice/.ssh/config")

    @Test func systemdGolden() throws {
        let unit = ServiceUnit(manager: .systemd, executable: "/usr/local/bin/fwd", paths: paths, environment: [:])
        #expect(try unit.render(templates: Self.templates) == """
        [Unit]
        Description=fwd: named SSH port forwards
        After=network-online.target
        Wants=network-online.target

        [Service]
        Type=simple
        ExecStart=/usr/local/bin/fwd daemon
        Restart=on-failure
        RestartSec=5
        RestartPreventExitStatus=78

        [Install]
        WantedBy=default.target

        """)
    }

    @Test func systemdGoldenWithPinnedPathsAndEscaping() throws {
        let paths = FwdPaths(config: "/srv/100% fwd/fwd.toml", stateDirectory: "/srv/state \"x\"", userSSHConfig: "/srv/ssh_config")
        let env = ["FWD_CONFIG": "x", "XDG_STATE_HOME": "/srv", "FWD_SSH_CONFIG": "/srv/ssh_config"]
        let unit = ServiceUnit(manager: .systemd, executable: "/opt/my tools/fwd$1", paths: paths, environment: env)
        #expect(try unit.render(templates: Self.templates) == """
        [Unit]
        Description=fwd: named SSH port forwards
        After=network-online.target
        Wants=network-online.target

        [Service]
        Type=simple
        ExecStart="/opt/my tools/fwd$$1" daemon
        Environment="FWD_CONFIG=/srv/100%% fwd/fwd.toml"
        Environment="FWD_SSH_CONFIG=/srv/ssh_config"
        Environment="FWD_STATE_DIR=/srv/state \\"x\\""
        Restart=on-failure
        RestartSec=5
        RestartPreventExitStatus=78

        [Install]
        WantedBy=default.target

        """)
    }

    /// A service manager's PATH is not the login shell's: an ssh picked with FWD_SSH is pinned, ssh from PATH is not.
    @Test func chosenSSHIsPinned() throws {
        let custom = FwdPaths(config: "/c/fwd.toml", stateDirectory: "/s", userSSHConfig: "/u", ssh: "/opt/openssh/bin/ssh")
        let pinned = try ServiceUnit(manager: .systemd, executable: "/bin/fwd", paths: custom, environment: ["FWD_SSH": "/opt/openssh/bin/ssh"])
            .render(templates: Self.templates)
        #expect(pinned.contains("Environment=\"FWD_SSH=/opt/openssh/bin/ssh\"\n"))
        let plain = try ServiceUnit(manager: .systemd, executable: "/bin/fwd", paths: custom, environment: [:]).render(templates: Self.templates)
        #expect(!plain.contains("FWD_SSH="))
    }

    @Test func launchdGolden() throws {
        let unit = ServiceUnit(manager: .launchd, executable: "/usr/local/bin/fwd", paths: paths, environment: ["FWD_STATE_DIR": "s"])
        #expect(try unit.render(templates: Self.templates) == """
        <?xml version="1.0" encoding="UTF-8"?>
        <!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
        <plist version="1.0">
        <dict>
            <key>Label</key>
            <string>dev.fwd.daemon</string>
            <key>ProgramArguments</key>
            <array>
                <string>/usr/local/bin/fwd</string>
                <string>daemon</string>
            </array>
            <key>EnvironmentVariables</key>
            <dict>
                <key>FWD_STATE_DIR</key>
                <string>/home/alice/.local/state/fwd</string>
            </dict>
            <key>RunAtLoad</key>
            <true/>
            <key>KeepAlive</key>
            <dict>
                <key>SuccessfulExit</key>
                <false/>
            </dict>
            <key>ThrottleInterval</key>
            <integer>5</integer>
            <key>ProcessType</key>
            <string>Background</string>
            <key>StandardOutPath</key>
            <string>/home/alice/.local/state/fwd/logs/daemon.log</string>
            <key>StandardErrorPath</key>
            <string>/home/alice/.local/state/fwd/logs/daemon.log</string>
        </dict>
        </plist>

        """)
    }

    @Test func thePlistParsesWithXMLSpecialCharactersInPaths() throws {
        let paths = FwdPaths(config: "/a/<b> & 'c'/fwd.toml", stateDirectory: "/s", userSSHConfig: "/u")
        let unit = ServiceUnit(manager: .launchd, executable: "/opt/R&D/fwd", paths: paths, environment: ["FWD_CONFIG": "x"])
        let data = Data(try unit.render(templates: Self.templates).utf8)
        let plist = try #require(try PropertyListSerialization.propertyList(from: data, format: nil) as? [String: Any])
        #expect(plist["ProgramArguments"] as? [String] == ["/opt/R&D/fwd", "daemon"])
        #expect((plist["EnvironmentVariables"] as? [String: String]) == ["FWD_CONFIG": "/a/<b> & 'c'/fwd.toml"])
        #expect(plist["RunAtLoad"] as? Bool == true)
        #expect((plist["KeepAlive"] as? [String: Bool]) == ["SuccessfulExit": false])
        #expect(plist["StandardErrorPath"] as? String == "/s/logs/daemon.log")
    }

    @Test func aLineBreakInAPathIsRefused() {
        let unit = ServiceUnit(manager: .systemd, executable: "/opt/fwd\nExecStartPre=/bin/evil", paths: paths, environment: [:])
        #expect(throws: ServiceUnitError.self) { try unit.render(templates: Self.templates) }
    }

    @Test func installPaths() {
        #expect(ServiceManager.systemd.installPath(environment: ["HOME": "/h", "XDG_CONFIG_HOME": "/x"]) == "/x/systemd/user/fwd.service")
        #expect(ServiceManager.systemd.installPath(environment: ["HOME": "/h"]) == "/h/.config/systemd/user/fwd.service")
        #expect(ServiceManager.launchd.installPath(environment: ["HOME": "/h"]) == "/h/Library/LaunchAgents/dev.fwd.daemon.plist")
    }

    /// `fwd daemon` at start wants the autostart tunnels up; nothing else changes.
    @Test func autostartTunnelsAreMarkedWantedUp() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fwd-auto-\(UUID().uuidString.prefix(6))").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileSystem.makePrivateDirectory(dir)
        try FileSystem.writeAtomically("""
        [tunnels.a]
        host = "h"
        local = "1:x:1"
        autostart = true

        [tunnels.b]
        host = "h"
        local = "2:x:2"

        """, to: dir + "/fwd.toml")
        let store = try Store.inMemory()
        try SupervisorService.markAutostart(store: store, config: try ConfigLoader.load(path: dir + "/fwd.toml"))
        #expect(try store.desiredUp().map(\.name) == ["a"])
        #expect(try store.tunnel("b") == nil)
    }
}
