import ArgumentParser
import Foundation
import FwdCore

extension ServiceManager: ExpressibleByArgument {}

struct ServiceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "service",
        abstract: "Run `fwd daemon` at login: a systemd user unit (Linux) or a launchd agent (macOS).",
        discussion: """
        At start the daemon brings up every tunnel with `autostart = true`, and every tunnel `fwd up` asked \
        for before; the service manager restarts it if it fails. Examples: fwd service install; fwd service print
        """,
        subcommands: [Install.self, Uninstall.self, Status.self, Print.self]
    )

    struct Options: ParsableArguments {
        @Option(help: "systemd or launchd (default: this system's).")
        var manager: ServiceManager?

        var resolved: ServiceManager { manager ?? .native }

        func unit(_ context: Context) -> ServiceUnit {
            ServiceUnit(manager: resolved, executable: Executable.path, paths: context.paths)
        }
    }

    struct Install: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write the unit for this user (mode 0644) and say how to enable it.",
            discussion: """
            systemd: $XDG_CONFIG_HOME/systemd/user/fwd.service (default ~/.config/…); launchd: \
            ~/Library/LaunchAgents/dev.fwd.daemon.plist. The unit runs this fwd binary and pins FWD_CONFIG, \
            FWD_STATE_DIR, FWD_SSH_CONFIG and FWD_RUNTIME_DIR when they (or the XDG variables) are set. Running it again rewrites it.
            """
        )

        @OptionGroup var options: Options

        @Flag(help: "Install a per-user unit: the default, and the only kind fwd installs.")
        var user = false

        func run() async throws {
            let context = Context.current()
            let unit = options.unit(context)
            // launchd opens the log file itself and fails if its directory is missing.
            if unit.manager == .launchd { try FileSystem.makePrivateDirectory(context.paths.logDirectory) }
            let path = try unit.install(templates: try Context.templates())
            print("Wrote \(path).")
            print("Start fwd now and at every login: \(unit.manager.enableHint)")
            if let config = try? context.loadConfig() {
                let names = config.tunnels.filter(\.autostart).map(\.name)
                print(names.isEmpty
                      ? "No tunnel has `autostart = true` yet; add it to a [tunnels.NAME] table (`fwd edit`) to bring it up at login."
                      : "At start it brings up: \(names.joined(separator: ", ")) (autostart = true).")
            }
        }
    }

    struct Uninstall: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove the unit that `fwd service install` wrote.",
            discussion: "A daemon the service manager started keeps running until `fwd daemon --stop`."
        )

        @OptionGroup var options: Options

        func run() async throws {
            let manager = options.resolved
            let path = manager.installPath()
            guard FileSystem.exists(path) else {
                print("\(path) does not exist; nothing to do.")
                return
            }
            if unlink(path) != 0 { throw FileSystemError.failed(path: path, action: "remove", errno: errno) }
            print("Removed \(path).")
            switch manager {
            case .systemd:
                // `systemctl enable` left this link; without the unit it would dangle.
                let link = (path as NSString).deletingLastPathComponent + "/default.target.wants/fwd.service"
                if (try? FileManager.default.destinationOfSymbolicLink(atPath: link)) != nil, unlink(link) == 0 {
                    print("Removed \(link).")
                }
                print("Run `systemctl --user daemon-reload` so systemd forgets it; stop a running daemon with `fwd daemon --stop`.")
            case .launchd:
                print("Run `\(manager.disableHint)` if it is loaded; stop a running daemon with `fwd daemon --stop`.")
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Say whether the unit is installed and current, and whether a supervisor runs.",
            discussion: "Example: fwd service status --json"
        )

        @OptionGroup var options: Options

        @Flag(help: "Print JSON: manager, path, installed, current, supervisor_pid, autostart.")
        var json = false

        func run() async throws {
            let context = Context.current()
            let unit = options.unit(context)
            let path = unit.manager.installPath()
            let installed = FileSystem.read(path)
            let current = try installed.map { $0 == (try unit.render(templates: try Context.templates())) }
            let pid = Control.runningPID(context.paths)
            let autostart = ((try? context.loadConfig())?.tunnels.filter(\.autostart).map(\.name)) ?? []
            if json {
                struct Report: Encodable {
                    var manager: String
                    var path: String
                    var installed: Bool
                    @JSONNull var current: Bool?
                    @JSONNull var supervisor_pid: Int32?
                    var autostart: [String]
                }
                print(try JSONOutput.encode(Report(manager: unit.manager.rawValue, path: path, installed: installed != nil,
                                                   current: current, supervisor_pid: pid, autostart: autostart)))
                return
            }
            let state: String
            switch current {
            case nil: state = "not installed (`fwd service install` writes it)"
            case true?: state = "installed"
            case false?: state = "installed, but differs from what this fwd would write (`fwd service install` rewrites it)"
            }
            print(Table.render([
                ["unit", "\(path): \(state)"],
                ["manager", unit.manager.rawValue],
                ["supervisor", pid.map { "running (pid \($0))" } ?? "not running"],
                ["autostart", autostart.isEmpty ? "no tunnel has autostart = true" : autostart.joined(separator: ", ")],
            ]), terminator: "")
        }
    }

    struct Print: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the unit `fwd service install` would write.",
            discussion: "Example: fwd service print --manager launchd"
        )

        @OptionGroup var options: Options

        func run() async throws {
            print(try options.unit(Context.current()).render(templates: try Context.templates()), terminator: "")
        }
    }
}
