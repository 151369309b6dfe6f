import Foundation
import Mustache

/// The service managers fwd can hand `fwd daemon` to at login.
package enum ServiceManager: String, Sendable, CaseIterable {
    case systemd, launchd

    /// The one this system uses for per-user agents.
    package static var native: ServiceManager {
        #if os(macOS)
        return .launchd
        #else
        return .systemd
        #endif
    }

    /// The template under `templates/`.
    var template: String {
        switch self {
        case .systemd: return "systemd/fwd.service.mustache"
        case .launchd: return "launchd/\(ServiceUnit.launchdLabel).plist.mustache"
        }
    }

    /// Where the user's unit goes: `$XDG_CONFIG_HOME/systemd/user/fwd.service` (else `~/.config/…`), or
    /// `~/Library/LaunchAgents/dev.fwd.daemon.plist`.
    package func installPath(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? FwdPaths.passwdHome()
        switch self {
        case .systemd:
            let config = environment["XDG_CONFIG_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? home + "/.config"
            return config + "/systemd/user/fwd.service"
        case .launchd:
            return home + "/Library/LaunchAgents/\(ServiceUnit.launchdLabel).plist"
        }
    }

    /// What to run after installing, to start the daemon now and at every login.
    package var enableHint: String {
        switch self {
        case .systemd: return "systemctl --user daemon-reload && systemctl --user enable --now fwd"
        case .launchd: return "launchctl bootstrap gui/$(id -u) \(installPath())"
        }
    }

    /// What to run before uninstalling, to stop the daemon and stop starting it.
    package var disableHint: String {
        switch self {
        case .systemd: return "systemctl --user disable --now fwd"
        case .launchd: return "launchctl bootout gui/$(id -u)/\(ServiceUnit.launchdLabel)"
        }
    }
}

package enum ServiceUnitError: Error, Sendable, Equatable, CustomStringConvertible {
    case templateMissing(path: String)
    case broken(path: String, reason: String)
    case unsafeValue(name: String, value: String)
    case cannotWrite(path: String, reason: String)

    package var description: String {
        switch self {
        case .templateMissing(let path):
            return "the unit template \(path) is missing; set FWD_TEMPLATES to the templates/ folder of fwd's source"
        case .broken(let path, let reason):
            return "the unit template \(path) cannot be rendered: \(reason)"
        case .unsafeValue(let name, let value):
            return "\(name) (\(Validation.printable(value))) contains a line break or control character, which a unit file cannot hold; use a path without one"
        case .cannotWrite(let path, let reason):
            return "cannot create \(path): \(reason)"
        }
    }
}

/// A unit that runs `fwd daemon` at login: a systemd user unit or a launchd agent, rendered from `templates/`.
package struct ServiceUnit: Sendable, Equatable {
    package static let launchdLabel = "dev.fwd.daemon"

    package var manager: ServiceManager
    /// The absolute path of the fwd binary the unit runs.
    package var executable: String
    /// Variables the daemon needs to read the same files as the CLI that installed it, sorted by name.
    package var environment: [Variable]
    /// launchd has no journal: the daemon's output goes here.
    package var logPath: String

    package struct Variable: Sendable, Equatable {
        package var name: String
        package var value: String
    }

    package init(manager: ServiceManager, executable: String, paths: FwdPaths,
                environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.manager = manager
        self.executable = executable
        logPath = paths.logDirectory + "/daemon.log"
        // A service manager starts the daemon without the login shell's variables, so whatever moved fwd's
        // files away from the defaults is pinned in the unit, resolved to absolute paths.
        func isSet(_ key: String) -> Bool { !(environment[key] ?? "").isEmpty }
        var vars: [Variable] = []
        if isSet("FWD_CONFIG") || isSet("XDG_CONFIG_HOME") { vars.append(Variable(name: "FWD_CONFIG", value: paths.config)) }
        if isSet("FWD_SSH_CONFIG") { vars.append(Variable(name: "FWD_SSH_CONFIG", value: paths.userSSHConfig)) }
        // The service's PATH is not the shell's (launchd: /usr/bin:/bin…): an ssh chosen with FWD_SSH stays chosen.
        if isSet("FWD_SSH") { vars.append(Variable(name: "FWD_SSH", value: paths.ssh)) }
        if isSet("FWD_STATE_DIR") || isSet("XDG_STATE_HOME") { vars.append(Variable(name: "FWD_STATE_DIR", value: paths.stateDirectory)) }
        if isSet("FWD_RUNTIME_DIR") { vars.append(Variable(name: "FWD_RUNTIME_DIR", value: paths.controlDirectory)) }
        self.environment = vars
    }

    /// The unit file's text, from `templates/systemd/fwd.service.mustache` or
    /// `templates/launchd/dev.fwd.daemon.plist.mustache` in `templates`.
    package func render(templates: String) throws(ServiceUnitError) -> String {
        let path = templates + "/" + manager.template
        guard let source = FileSystem.read(path) else { throw .templateMissing(path: path) }
        for (name, value) in [("the fwd executable path", executable), ("the log path", logPath)] + environment.map({ ($0.name, $0.value) })
        where value.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            throw .unsafeValue(name: name, value: value)
        }
        let context: [String: Any]
        let template: MustacheTemplate
        do {
            switch manager {
            case .systemd:
                // Plain text: values are escaped for systemd here, not as HTML.
                template = try MustacheTemplate(string: "{{%CONTENT_TYPE:TEXT}}\n" + source)
                context = [
                    "exec_start": Self.systemdWord(executable) + " daemon",
                    "environment": environment.map { ["assignment": Self.systemdQuoted("\($0.name)=\($0.value)")] },
                ]
            case .launchd:
                // Mustache's default HTML escaping is what XML needs.
                template = try MustacheTemplate(string: source)
                context = [
                    "label": Self.launchdLabel, "executable": executable, "log": logPath,
                    "has_environment": !environment.isEmpty,
                    "environment": environment.map { ["name": $0.name, "value": $0.value] },
                ]
            }
        } catch {
            throw .broken(path: path, reason: "\(error)")
        }
        return template.render(context)
    }

    /// One word of an ExecStart line: `%` starts a specifier and `$` a variable, so both are doubled; a word
    /// with blanks, quotes or backslashes is double-quoted.
    static func systemdWord(_ value: String) -> String {
        let plain = value.replacingOccurrences(of: "%", with: "%%").replacingOccurrences(of: "$", with: "$$")
        guard plain.contains(where: { " \t\"'\\;".contains($0) }) else { return plain }
        return systemdQuoted(value).replacingOccurrences(of: "$", with: "$$")
    }

    /// A double-quoted value for `Environment=`, with `\`, `"` and `%` escaped.
    static func systemdQuoted(_ value: String) -> String {
        let escaped = value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "%", with: "%%")
        return "\"\(escaped)\""
    }

    /// Writes the unit where `manager` looks for it, mode 0644 (service managers read it; it holds no secret).
    /// Returns the path.
    @discardableResult
    package func install(templates: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String {
        let text = try render(templates: templates)
        let path = manager.installPath(environment: environment)
        let dir = (path as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        } catch {
            throw ServiceUnitError.cannotWrite(path: dir, reason: error.localizedDescription)
        }
        try FileSystem.writeAtomically(text, to: path, mode: 0o644)
        return path
    }
}
