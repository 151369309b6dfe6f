import Foundation
import Mustache

/// A tunnel preset from `templates/presets/NAME.toml.mustache`. The first two lines are Mustache comments:
/// `{{! summary: … }}` and `{{! defaults: target=… port=… target_port=… }}`.
package struct Preset: Sendable, Equatable {
    package var name: String
    package var summary: String
    package var defaults: [String: String]
    package var source: String

    package struct Values: Sendable {
        package var name: String
        package var host: String
        package var target: String?
        package var port: Int?
        package var targetPort: Int?
        /// A server's fixed passive port range, `FIRST-LAST` (the ftp preset), forwarded port for port.
        package var passive: String?

        package init(name: String, host: String, target: String? = nil, port: Int? = nil, targetPort: Int? = nil, passive: String? = nil) {
            self.name = name
            self.host = host
            self.target = target
            self.port = port
            self.targetPort = targetPort
            self.passive = passive
        }
    }

    /// Whether the preset forwards a passive port range, and so needs `passive`.
    package var usesPassive: Bool { source.contains("{{passive}}") }

    init(name: String, source: String) {
        self.name = name
        self.source = source
        var summary = ""
        var defaults: [String: String] = [:]
        for line in source.split(separator: "\n").prefix(4) {
            let t = line.trimmingCharacters(in: .whitespaces)
            guard t.hasPrefix("{{!"), t.hasSuffix("}}") else { continue }
            let body = t.dropFirst(3).dropLast(2).trimmingCharacters(in: .whitespaces)
            if body.hasPrefix("summary:") {
                summary = body.dropFirst("summary:".count).trimmingCharacters(in: .whitespaces)
            } else if body.hasPrefix("defaults:") {
                for pair in body.dropFirst("defaults:".count).split(separator: " ") {
                    let kv = pair.split(separator: "=", maxSplits: 1)
                    if kv.count == 2 { defaults[String(kv[0])] = String(kv[1]) }
                }
            }
        }
        self.summary = summary
        self.defaults = defaults
    }

    /// Renders the preset into a TOML table. Every value is validated first, so nothing a user types can add
    /// keys or tables; the caller still parses the result as part of the whole config before writing it.
    package func render(_ values: Values) throws(PresetError) -> String {
        if let p = Validation.nameProblem(values.name) { throw .badValue(p) }
        if let p = Validation.hostProblem(values.host) { throw .badValue(p) }
        var target = values.target ?? defaults["target"] ?? "localhost"
        if let p = Validation.hostProblem(target) { throw .badValue("target: \(p)") }
        if target.contains(":") && !target.hasPrefix("[") { target = "[\(target)]" }
        let port = values.port ?? defaults["port"].flatMap { Int($0) }
        let targetPort = values.targetPort ?? defaults["target_port"].flatMap { Int($0) }
        for p in [port, targetPort].compactMap({ $0 }) where !(1...65535).contains(p) {
            throw .badValue("port \(p) is out of range (1–65535)")
        }
        var passive = ""
        if usesPassive {
            guard let range = values.passive else {
                throw .badValue("the \(name) preset needs --passive FIRST-LAST: the server's fixed passive port range (e.g. 60000-60009), forwarded port for port")
            }
            passive = try Self.passiveRange(range)
        } else if values.passive != nil {
            throw .badValue("--passive goes with a preset that forwards a passive port range (ftp); the \(name) preset has none")
        }
        let template: MustacheTemplate
        do {
            template = try MustacheTemplate(string: "{{%CONTENT_TYPE:TEXT}}" + source)
        } catch {
            throw .broken(name: name, reason: "\(error)")
        }
        let context: [String: Any] = [
            "name": values.name, "host": values.host, "target": target,
            "port": port.map(String.init) ?? "", "target_port": targetPort.map(String.init) ?? "",
            "passive": passive,
        ]
        return template.render(context)
    }

    /// `FIRST-LAST` (or one port) under the same rules as a range in a forward spec.
    static func passiveRange(_ text: String) throws(PresetError) -> String {
        let digitsAndDash = !text.isEmpty && text.utf8.allSatisfy { ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9")) || $0 == UInt8(ascii: "-") }
        guard digitsAndDash else {
            throw .badValue("--passive \"\(Validation.printable(text))\" is not a port range; write FIRST-LAST in decimal, e.g. 60000-60009")
        }
        do {
            _ = try ForwardRange.parse("\(text):localhost:\(text)", kind: .local)
        } catch {
            throw .badValue("--passive \(text): \(error.reason)")
        }
        return text
    }
}

package enum PresetError: Error, Sendable, Equatable, CustomStringConvertible {
    case notFound(name: String, available: [String])
    case directoryMissing(searched: [String])
    case badValue(String)
    case broken(name: String, reason: String)

    package var description: String {
        switch self {
        case .notFound(let name, let available):
            let hint = ConfigError.closest(to: name, in: available).map { "did you mean \"\($0)\"? " } ?? ""
            return "no preset named \"\(Validation.printable(name))\"; \(hint)`fwd templates` lists: \(available.joined(separator: ", "))"
        case .directoryMissing(let searched):
            return "fwd's templates directory was not found (looked in \(searched.joined(separator: ", "))); set FWD_TEMPLATES to the templates/ folder of fwd's source"
        case .badValue(let message):
            return message
        case .broken(let name, let reason):
            return "preset \(name) cannot be rendered: \(reason)"
        }
    }
}

package enum Presets {
    /// `$FWD_TEMPLATES`, else `share/fwd/templates` beside the binary's prefix, else a `templates/` folder in a
    /// parent of the binary (a build inside the source tree).
    package static func directory(environment: [String: String] = ProcessInfo.processInfo.environment,
                                 executable: String = CommandLine.arguments.first ?? "") throws(PresetError) -> String {
        var candidates: [String] = []
        if let dir = environment["FWD_TEMPLATES"], !dir.isEmpty { candidates.append(dir) }
        let exe = URL(fileURLWithPath: executable).resolvingSymlinksInPath().deletingLastPathComponent()
        candidates.append(exe.deletingLastPathComponent().appendingPathComponent("share/fwd/templates").path)
        var dir = exe
        for _ in 0..<6 {
            candidates.append(dir.appendingPathComponent("templates").path)
            dir = dir.deletingLastPathComponent()
        }
        for candidate in candidates where FileManager.default.fileExists(atPath: candidate + "/presets") {
            return candidate
        }
        throw .directoryMissing(searched: Array(candidates.prefix(3)))
    }

    package static func all(in directory: String) -> [Preset] {
        let dir = directory + "/presets"
        let files = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return files.filter { $0.hasSuffix(".toml.mustache") }.sorted().compactMap { file in
            guard let source = FileSystem.read(dir + "/" + file) else { return nil }
            return Preset(name: String(file.dropLast(".toml.mustache".count)), source: source)
        }
    }

    package static func named(_ name: String, in directory: String) throws(PresetError) -> Preset {
        let presets = all(in: directory)
        guard let preset = presets.first(where: { $0.name == name }) else {
            throw .notFound(name: name, available: presets.map(\.name))
        }
        return preset
    }
}
