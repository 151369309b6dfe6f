import Foundation
import TOMLKit
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads fwd.toml into a validated `FwdConfig`. Every problem is reported with file, line and column;
/// the loader never writes anything, so a broken config changes nothing.
package enum ConfigLoader {
    static let topKeys = ["hosts", "tunnels", "groups", "metrics", "hooks", "notify"]
    static let metricsKeys = ["listen", "public"]
    static let hooksKeys = ["on_change", "timeout"]
    static let hostKeys = ["hostname", "user", "port", "jump", "identity", "forward_agent", "forward_x11", "options",
                           "alive_interval", "alive_count", "connect_timeout", "retry_max_delay", "max_attempts"]
    static let tunnelKeys = ["host", "local", "remote", "dynamic", "probe", "probe_target", "public", "autostart", "domains",
                             "on_change", "notify"]

    /// Loads the file at `path`; a missing file is an empty config.
    package static func load(path: String) throws(ConfigError) -> FwdConfig {
        guard FileManager.default.fileExists(atPath: path) else { return FwdConfig(path: path) }
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw .io(path: path, reason: "cannot read the config: \(error.localizedDescription)")
        }
        return try parse(text, path: path)
    }

    package static func parse(_ text: String, path: String) throws(ConfigError) -> FwdConfig {
        // toml++ (inside TOMLKit) trips an assertion on some malformed input — an abort in a debug build, undefined
        // behaviour where NDEBUG turns it into an assumption. `syntaxHazard` reports those inputs first.
        if let bad = syntaxHazard(in: text) {
            throw .invalid([Diagnostic(file: path, line: bad.line, column: bad.column, message: "TOML syntax error: \(bad.message)")])
        }
        let root: TOMLTable
        do {
            root = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw .invalid([Diagnostic(file: path, line: error.source.begin.line, column: error.source.begin.column,
                                       message: "TOML syntax error: \(Validation.printable(error.description))")])
        } catch {
            throw .invalid([Diagnostic(file: path, line: 1, column: 1, message: "TOML syntax error: \(error)")])
        }
        var reader = Reader(path: path, locator: TOMLLocator(text))
        let config = reader.read(root)
        guard reader.diagnostics.isEmpty else {
            throw .invalid(reader.diagnostics.sorted { ($0.line, $0.column) < ($1.line, $1.column) })
        }
        return config
    }

    struct Problem: Error { var text: String }

    /// `[metrics] listen`: a UNIX socket path (starting with '/'), or `[address:]port` as a -D forward is written,
    /// with the same rules: loopback (127.0.0.1 when no address is written) unless `public = true`.
    static func metricsListen(_ text: String, isPublic: Bool) -> Result<MetricsListen, Problem> {
        if text.hasPrefix("/") {
            if let p = Validation.pathProblem(text) { return .failure(Problem(text: "listen: \(p)")) }
            if text.utf8.count > ForwardSpec.maxSocketPathBytes {
                return .failure(Problem(text: "listen: the socket path is \(text.utf8.count) bytes; UNIX socket paths must be shorter than \(ForwardSpec.maxSocketPathBytes + 1) bytes"))
            }
            if text.utf8.split(separator: UInt8(ascii: "/")).contains(where: { $0.elementsEqual("..".utf8) }) {
                return .failure(Problem(text: "listen: the socket path \"\(Validation.printable(text))\" contains '..'; write the path without parent-directory steps"))
            }
            return .success(.unix(path: text))
        }
        let spec: ForwardSpec
        do {
            spec = try ForwardSpec.parse(text, kind: .dynamic)
        } catch {
            return .failure(Problem(text: "listen \"\(Validation.printable(text))\": \(error.reason); write \"127.0.0.1:9412\" (address:port) or a UNIX socket path"))
        }
        guard case .tcp(let written, let port) = spec.listen else { return .failure(Problem(text: "listen: expected address:port or a UNIX socket path")) }
        var host = written ?? "127.0.0.1"
        if host == "" || host == "*" { host = "0.0.0.0" }
        if host.lowercased() == "localhost" { host = "127.0.0.1" }
        var v4 = in_addr(), v6 = in6_addr()
        guard inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1 else {
            return .failure(Problem(text: "listen: \"\(Validation.printable(host))\" is not a numeric address; write an IP address, like 127.0.0.1:9412"))
        }
        if !spec.isLoopbackOnly || host == "0.0.0.0", !isPublic {
            return .failure(Problem(text: "listen: \(text) is reachable from other machines, not only from this one; add `public = true` to [metrics] if that is intended"))
        }
        return .success(.tcp(host: host, port: port))
    }

    /// Where toml++ would trip an assertion, or the first control character TOML forbids (only tab and line breaks
    /// are allowed); line and column count Unicode scalars from 1. The assertions found so far by fuzzing: a table
    /// header that does not start with a name (`[=]`, `[#]`, `[é]`, `[` at the end of a line), a '}' where an
    /// array expects a value (`[}]`, `[1, }]`) and malformed date-times (`1979-05-27 1`). The scan follows
    /// strings, comments and brackets only as far as it must to tell a table header from an array, and a value
    /// from a key.
    static func syntaxHazard(in text: String) -> (line: Int, column: Int, message: String)? {
        let s = Array(text.unicodeScalars)
        var line = 1, column = 1
        for (i, c) in s.enumerated() {
            let v = c.value
            if c == "\n" {
                line += 1
                column = 1
                continue
            }
            let crlf = c == "\r" && i + 1 < s.count && s[i + 1] == "\n"
            if (v < 0x20 && c != "\t" && !crlf) || v == 0x7F {
                return (line, column, "control character U+\(String(format: "%04X", v)) is not allowed (only tab and line breaks are); remove it")
            }
            column += 1
        }

        line = 1
        column = 1
        var i = 0
        func at(_ k: Int) -> Unicode.Scalar? { k < s.count ? s[k] : nil }
        func advance(_ n: Int = 1) {
            for _ in 0..<n where i < s.count {
                if s[i] == "\n" { line += 1; column = 1 } else { column += 1 }
                i += 1
            }
        }
        func skipBlanks() { while at(i) == " " || at(i) == "\t" { advance() } }
        func startsName(_ c: Unicode.Scalar?) -> Bool {
            guard let c else { return false }
            return ("0"..."9").contains(c) || ("A"..."Z").contains(c) || ("a"..."z").contains(c) || ["_", "-", "\"", "'"].contains(c)
        }
        func dateOrTime(at k: Int) -> String? {
            func digits(_ range: Range<Int>) -> Bool { range.allSatisfy { at($0).map { ("0"..."9").contains($0) } ?? false } }
            if digits(k..<(k + 4)) && at(k + 4) == "-" { return "date" }
            if digits(k..<(k + 2)) && at(k + 2) == ":" { return "time" }
            return nil
        }
        var arrays: [Bool] = [] // open '[' (true) and '{' (false) inside a value
        var lineStart = true
        var expectValue = false // where a value starts: after '=', or in an array after '[' or ','
        while let c = at(i) {
            switch c {
            case "\n":
                lineStart = arrays.isEmpty
                advance()
            case " ", "\t", "\r":
                advance()
            case "#":
                while let d = at(i), d != "\n" { advance() }
            case "\"", "'":
                lineStart = false
                expectValue = false
                let triple = at(i + 1) == c && at(i + 2) == c
                advance(triple ? 3 : 1)
                while let d = at(i) {
                    if d == "\\" && c == "\"" { advance(2); continue }
                    if d == "\n" && !triple { break }
                    if d == c && (!triple || (at(i + 1) == c && at(i + 2) == c)) {
                        advance(triple ? 3 : 1)
                        break
                    }
                    advance()
                }
            case "[" where arrays.isEmpty && lineStart:
                // A table header: '[' or '[[', blanks, then a name or ']' (which toml++ reports itself).
                lineStart = false
                advance()
                let spaced = at(i) == " " || at(i) == "\t"
                skipBlanks()
                if at(i) == "[" {
                    if spaced { continue }
                    advance()
                    skipBlanks()
                }
                if !(startsName(at(i)) || at(i) == "]" || at(i) == nil) {
                    return (line, column, "a table header must start with a name (letters, digits, '_', '-') or a quoted name, like [tunnels.wiki]")
                }
            case "[", "{":
                lineStart = false
                arrays.append(c == "[")
                expectValue = c == "["
                advance()
            case "}" where expectValue && arrays.last == true:
                return (line, column, "expected a value or ']' in the array, saw '}'")
            case "]", "}":
                if !arrays.isEmpty { arrays.removeLast() }
                expectValue = false
                advance()
            case ",":
                expectValue = arrays.last == true
                advance()
            case "=":
                lineStart = false
                expectValue = true
                advance()
            default:
                // fwd.toml has no date or time values, and toml++ trips on some malformed ones (`1979-05-27 1`).
                if expectValue, let kind = dateOrTime(at: i) {
                    return (line, column, "\(kind) values are not used in fwd.toml; if this is text, put it in quotes")
                }
                lineStart = false
                expectValue = false
                advance()
            }
        }
        return nil
    }

    private struct Reader {
        let path: String
        let locator: TOMLLocator
        var diagnostics: [Diagnostic] = []

        init(path: String, locator: TOMLLocator) {
            self.path = path
            self.locator = locator
        }

        mutating func report(_ keyPath: [String], value: String? = nil, _ message: String) {
            let p = value.map { locator.position(of: keyPath, value: $0) } ?? locator.position(of: keyPath)
            diagnostics.append(Diagnostic(file: path, line: p.line, column: p.column, message: message))
        }

        @discardableResult
        mutating func checkKeys(_ table: TOMLTable, at keyPath: [String], allowed: [String], what: String) -> Int {
            let unknown = table.keys.filter { !allowed.contains($0) }
            for key in unknown {
                let hint = ConfigError.closest(to: key, in: allowed).map { "; did you mean \"\($0)\"?" }
                    ?? "; expected one of: \(allowed.joined(separator: ", "))"
                report(keyPath + [key], "unknown key \"\(Validation.printable(key))\" in \(what)\(hint)")
            }
            return unknown.count
        }

        mutating func read(_ root: TOMLTable) -> FwdConfig {
            var config = FwdConfig(path: path)
            checkKeys(root, at: [], allowed: ConfigLoader.topKeys, what: "the top level")
            if let hosts = table(root, "hosts", at: []) {
                for name in ordered(hosts.keys, under: ["hosts"]) {
                    guard let t = table(hosts, name, at: ["hosts"]) else { continue }
                    if let entry = readHost(name, t) { config.hosts[name] = entry }
                }
            }
            if let tunnels = table(root, "tunnels", at: []) {
                for name in ordered(tunnels.keys, under: ["tunnels"]) {
                    guard let t = table(tunnels, name, at: ["tunnels"]) else { continue }
                    if let tunnel = readTunnel(name, t, hosts: config.hosts) { config.tunnels.append(tunnel) }
                    let at = ["tunnels", name]
                    if let hook = string(t, "on_change", at: at) {
                        if let p = hookProblem(hook) { report(at + ["on_change"], p) } else { config.monitoring.tunnelOnChange[name] = hook }
                    }
                    if let notify = bool(t, "notify", at: at) { config.monitoring.tunnelNotify[name] = notify }
                }
            }
            readMonitoring(root, into: &config.monitoring)
            if let groups = table(root, "groups", at: []) {
                for name in ordered(groups.keys, under: ["groups"]) {
                    let declared = (root["tunnels"]?.table?.keys ?? [])
                    if let members = readGroup(name, groups[name]!, declared: declared) {
                        config.groups.append((name, members))
                    }
                }
            }
            checkNameClashes(config)
            return config
        }

        /// `[metrics]`, `[hooks]` and the top-level `notify` (docs/configuration.md).
        mutating func readMonitoring(_ root: TOMLTable, into m: inout MonitoringSettings) {
            if let notify = bool(root, "notify", at: []) { m.notify = notify }
            if let t = table(root, "metrics", at: []) {
                checkKeys(t, at: ["metrics"], allowed: ConfigLoader.metricsKeys, what: "[metrics]")
                let isPublic = bool(t, "public", at: ["metrics"]) ?? false
                if let listen = string(t, "listen", at: ["metrics"]) {
                    switch ConfigLoader.metricsListen(listen, isPublic: isPublic) {
                    case .success(let l): m.metricsListen = l
                    case .failure(let problem): report(["metrics", "listen"], problem.text)
                    }
                }
            }
            if let t = table(root, "hooks", at: []) {
                checkKeys(t, at: ["hooks"], allowed: ConfigLoader.hooksKeys, what: "[hooks]")
                if let hook = string(t, "on_change", at: ["hooks"]) {
                    if let p = hookProblem(hook) { report(["hooks", "on_change"], p) } else { m.onChange = hook }
                }
                if let seconds = int(t, "timeout", at: ["hooks"], range: 1...3600) { m.hookTimeout = Double(seconds) }
            }
        }

        /// A hook is a shell command line the user wrote; fwd passes it to /bin/sh -c as it is, and the
        /// values only through the environment. Only what no shell line should hold is refused.
        func hookProblem(_ command: String) -> String? {
            if command.trimmingCharacters(in: .whitespaces).isEmpty { return "on_change is empty; write a command, like \"notify-me.sh\"" }
            if let bad = command.unicodeScalars.first(where: { ($0.value < 0x20 && $0 != "\t") || $0.value == 0x7f }) {
                return "on_change contains control character U+\(String(format: "%04X", bad.value)); write the command on one line"
            }
            return nil
        }

        /// Keys in the order they appear in the file (TOMLKit sorts them).
        func ordered(_ keys: [String], under prefix: [String]) -> [String] {
            keys.sorted { a, b in
                let pa = locator.position(of: prefix + [a]), pb = locator.position(of: prefix + [b])
                return (pa.line, pa.column, a) < (pb.line, pb.column, b)
            }
        }

        mutating func table(_ parent: TOMLTable, _ key: String, at keyPath: [String]) -> TOMLTable? {
            guard let value = parent[key] else { return nil }
            guard let t = value.table else {
                report(keyPath + [key], "\(describe(keyPath + [key])) must be a table, not \(typeName(value))")
                return nil
            }
            return t
        }

        func describe(_ keyPath: [String]) -> String {
            keyPath.count <= 1 ? "[\(keyPath.joined())]" : "[\(keyPath[0]).\(keyPath[1])]" + (keyPath.count > 2 ? " key \"\(keyPath[2...].joined(separator: "."))\"" : "")
        }

        func typeName(_ value: TOMLValueConvertible) -> String {
            switch value.type {
            case .string: "a string"
            case .int: "an integer"
            case .double: "a float"
            case .bool: "a boolean"
            case .table: "a table"
            case .array: "an array"
            default: "a date/time"
            }
        }

        mutating func string(_ t: TOMLTable, _ key: String, at keyPath: [String]) -> String? {
            guard let value = t[key] else { return nil }
            guard let s = value.string else {
                report(keyPath + [key], "\(describe(keyPath + [key])) must be a string, not \(typeName(value))")
                return nil
            }
            return s
        }

        mutating func bool(_ t: TOMLTable, _ key: String, at keyPath: [String]) -> Bool? {
            guard let value = t[key] else { return nil }
            guard let b = value.bool else {
                report(keyPath + [key], "\(describe(keyPath + [key])) must be true or false, not \(typeName(value))")
                return nil
            }
            return b
        }

        mutating func int(_ t: TOMLTable, _ key: String, at keyPath: [String], range: ClosedRange<Int>) -> Int? {
            guard let value = t[key] else { return nil }
            guard let i = value.int else {
                report(keyPath + [key], "\(describe(keyPath + [key])) must be an integer, not \(typeName(value))")
                return nil
            }
            guard range.contains(i) else {
                report(keyPath + [key], "\(describe(keyPath + [key])) is \(i); expected \(range.lowerBound)–\(range.upperBound)")
                return nil
            }
            return i
        }

        mutating func checkName(_ name: String, at keyPath: [String]) -> Bool {
            if let problem = Validation.nameProblem(name) {
                report(keyPath, problem)
                return false
            }
            return true
        }

        mutating func readHost(_ name: String, _ t: TOMLTable) -> HostEntry? {
            let at = ["hosts", name]
            guard checkName(name, at: at) else { return nil }
            checkKeys(t, at: at, allowed: ConfigLoader.hostKeys, what: "[hosts.\(name)]")
            var entry = HostEntry(name: name)
            if let v = string(t, "hostname", at: at) {
                if let p = Validation.hostProblem(v) { report(at + ["hostname"], p) } else { entry.hostname = v }
            }
            if let v = string(t, "user", at: at) {
                if let p = Validation.userProblem(v) { report(at + ["user"], p) } else { entry.user = v }
            }
            entry.port = int(t, "port", at: at, range: 1...65535)
            if let v = string(t, "jump", at: at) {
                let hops = v.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
                if let p = hops.lazy.compactMap(Validation.jumpHopProblem).first {
                    report(at + ["jump"], "jump: \(p) (a comma-separated list of hosts, like ssh's ProxyJump)")
                } else {
                    entry.jump = v
                }
            }
            if let v = string(t, "identity", at: at) {
                if let p = Validation.pathProblem(v) { report(at + ["identity"], p) } else { entry.identity = v }
            }
            entry.forwardAgent = bool(t, "forward_agent", at: at) ?? false
            entry.forwardX11 = bool(t, "forward_x11", at: at) ?? false
            entry.aliveInterval = int(t, "alive_interval", at: at, range: 1...3600) ?? HostEntry.defaultAliveInterval
            entry.aliveCount = int(t, "alive_count", at: at, range: 1...100) ?? HostEntry.defaultAliveCount
            entry.connectTimeout = int(t, "connect_timeout", at: at, range: 1...600) ?? HostEntry.defaultConnectTimeout
            entry.retryMaxDelay = int(t, "retry_max_delay", at: at, range: 1...3600)
            entry.maxAttempts = int(t, "max_attempts", at: at, range: 0...100_000) ?? 0
            if let options = table(t, "options", at: at) {
                for key in ordered(options.keys, under: at + ["options"]) {
                    let keyPath = at + ["options", key]
                    if let p = Validation.optionNameProblem(key) {
                        report(keyPath, p)
                        continue
                    }
                    let raw = options[key]!
                    let value: String
                    if let s = raw.string {
                        value = s
                    } else if let i = raw.int {
                        value = String(i)
                    } else if let b = raw.bool {
                        value = b ? "yes" : "no"
                    } else {
                        report(keyPath, "option \(key) must be a string, integer or boolean, not \(typeName(raw))")
                        continue
                    }
                    if let p = Validation.optionValueProblem(key, value) { report(keyPath, p) } else { entry.options.append((key, value)) }
                }
            }
            return entry
        }

        mutating func readTunnel(_ name: String, _ t: TOMLTable, hosts: [String: HostEntry]) -> Tunnel? {
            let at = ["tunnels", name]
            guard checkName(name, at: at) else { return nil }
            // A misspelt forward key is reported once, not again as "no forwards".
            var ok = checkKeys(t, at: at, allowed: ConfigLoader.tunnelKeys, what: "[tunnels.\(name)]") == 0
            let host = string(t, "host", at: at)
            if host == nil, t["host"] == nil {
                report(at, "tunnel \"\(name)\" needs a host (a [hosts] name, an ssh alias or user@host[:port])")
                ok = false
            }
            if let host, hosts[host] == nil, let p = Validation.hostProblem(host) {
                report(at + ["host"], p)
                ok = false
            }
            let isPublic = bool(t, "public", at: at) ?? false
            var written: [ForwardRange] = []
            for kind in ForwardKind.allCases {
                let key = kind.rawValue
                guard let value = t[key] else { continue }
                var specs: [String] = []
                if let s = value.string {
                    specs = [s]
                } else if let array = value.array {
                    for element in array {
                        if let s = element.string { specs.append(s) } else {
                            report(at + [key], "every element of \(key) must be a string like ssh's \(kind.flag) argument, not \(typeName(element))")
                            ok = false
                        }
                    }
                } else {
                    report(at + [key], "\(key) must be a string like ssh's \(kind.flag) argument, or an array of them, not \(typeName(value))")
                    ok = false
                }
                for text in specs {
                    do {
                        let range = try ForwardRange.parse(text, kind: kind)
                        let spec = range.specs[0]
                        if !spec.isLoopbackOnly && !isPublic {
                            report(at + [key], value: text, "\(kind.rawValue) forward \"\(text)\" listens on \(spec.bindAddress.map { $0.isEmpty ? "every interface" : $0 } ?? "a non-loopback address"), not only loopback; add `public = true` to [tunnels.\(name)] if that is intended")
                            ok = false
                        }
                        written.append(range)
                    } catch {
                        report(at + [key], value: text, "\(error.description)")
                        ok = false
                    }
                }
            }
            if !checkRepeatedPorts(written, at: at) { ok = false }
            let forwards = written.flatMap(\.specs)
            if forwards.isEmpty && ok {
                report(at, "tunnel \"\(name)\" has no forwards; add local, remote or dynamic (written like ssh -L/-R/-D)")
                ok = false
            }
            var probe: ProbeKind?
            if let p = string(t, "probe", at: at) {
                if let kind = ProbeKind(rawValue: p) {
                    probe = kind
                    if kind != .none, !forwards.isEmpty, !forwards.contains(where: kind.fits) {
                        report(at + ["probe"], "probe \"\(p)\" fits none of this tunnel's forwards (tcp tests local forwards; banner, http and the protocol probes local or remote ones; socks a dynamic one, remote a remote one)")
                        ok = false
                    }
                } else {
                    let names = ProbeKind.allCases.map(\.rawValue)
                    let hint = ConfigError.closest(to: p, in: names).map { "; did you mean \"\($0)\"?" } ?? ""
                    report(at + ["probe"], "unknown probe \"\(Validation.printable(p))\"; expected one of: \(names.joined(separator: ", "))\(hint)")
                    ok = false
                }
            }
            var probeTarget: SocksTarget?
            if let text = string(t, "probe_target", at: at) {
                switch SocksTarget.parse(text) {
                case .success(let target):
                    if forwards.contains(where: \.isDynamic) || forwards.isEmpty {
                        probeTarget = target
                    } else {
                        report(at + ["probe_target"], "probe_target is what a dynamic forward's probe connects to through the proxy; tunnel \"\(name)\" has no dynamic forward")
                        ok = false
                    }
                case .failure(let problem):
                    report(at + ["probe_target"], value: text, "probe_target \(problem.description)")
                    ok = false
                }
            }
            let domains = readDomains(t, at: at, forwards: forwards)
            if domains == nil { ok = false }
            guard ok, let host else { return nil }
            var tunnel = Tunnel(name: name, host: host, written: written, probe: probe)
            tunnel.domains = domains ?? []
            tunnel.probeTarget = probeTarget
            tunnel.isPublic = isPublic
            tunnel.autostart = bool(t, "autostart", at: at) ?? false
            return tunnel
        }

        /// A listener used twice in one tunnel would fail when the second forward is added; with port ranges
        /// that is easy to write (`8000-8009` and `8005`), so it is reported here, at the second one.
        mutating func checkRepeatedPorts(_ written: [ForwardRange], at: [String]) -> Bool {
            var seen: [String: ForwardRange] = [:]
            var ok = true
            for range in written {
                for spec in range.specs {
                    guard let port = spec.listenPort, port != 0 else { continue }
                    let key = "\(spec.kind == .remote ? "server" : "local") \(spec.bindAddress ?? "127.0.0.1"):\(port)"
                    if let first = seen[key] {
                        let side = spec.kind == .remote ? "the server's port" : "local port"
                        report(at + [range.kind.rawValue], value: range.text,
                               "\(range.kind.rawValue) forward \"\(range.text)\" listens on \(side) \(port), as \"\(first.text)\" in the same tunnel does; each port can be forwarded once")
                        ok = false
                        break
                    }
                    seen[key] = range
                }
            }
            return ok
        }

        /// `domains`: names a PAC script sends through the tunnel's -D port. nil when something was reported.
        mutating func readDomains(_ t: TOMLTable, at: [String], forwards: [ForwardSpec]) -> [String]? {
            guard let value = t["domains"] else { return [] }
            let keyPath = at + ["domains"]
            guard let array = value.array else {
                report(keyPath, "domains must be an array of names like [\"*.corp.lan\", \"wiki.example.com\"], not \(typeName(value))")
                return nil
            }
            var domains: [String] = []
            var ok = true
            for element in array {
                guard let name = element.string else {
                    report(keyPath, "every element of domains must be a name in quotes, like \"*.corp.lan\", not \(typeName(element))")
                    ok = false
                    continue
                }
                if let p = Validation.domainProblem(name) {
                    report(keyPath, value: "\"\(name)\"", p)
                    ok = false
                } else {
                    domains.append(name.lowercased())
                }
            }
            if ok, !domains.isEmpty, !forwards.contains(where: { $0.kind == .dynamic && $0.listenPort != nil }) {
                report(keyPath, "domains go with a dynamic forward: `fwd pac` sends those names to the tunnel's SOCKS port; add dynamic = \"1080\" (or another port) to [\(at.joined(separator: "."))]")
                ok = false
            }
            return ok ? domains : nil
        }

        /// `declared` holds every tunnel name in the file, valid or not, so one bad tunnel is reported once,
        /// not again by each group that lists it.
        mutating func readGroup(_ name: String, _ value: TOMLValueConvertible, declared: [String]) -> [String]? {
            let at = ["groups", name]
            guard checkName(name, at: at) else { return nil }
            guard let array = value.array else {
                report(at, "group \"\(name)\" must be an array of tunnel names, not \(typeName(value))")
                return nil
            }
            var members: [String] = []
            for element in array {
                guard let member = element.string else {
                    report(at, "group \"\(name)\" must list tunnel names as strings")
                    return nil
                }
                if declared.contains(member) {
                    members.append(member)
                } else {
                    let hint = ConfigError.closest(to: member, in: declared).map { "; did you mean \"\($0)\"?" } ?? ""
                    report(at, value: "\"\(member)\"", "group \"\(name)\" names \"\(Validation.printable(member))\", which is not a tunnel\(hint)")
                }
            }
            return members
        }

        /// Tunnel and host names both become `Host` blocks and ssh matches them without regard to case;
        /// group names share the command line with tunnel names.
        mutating func checkNameClashes(_ config: FwdConfig) {
            let named: [(section: String, name: String)] =
                config.hosts.keys.sorted { locator.position(of: ["hosts", $0]).line < locator.position(of: ["hosts", $1]).line }.map { ("hosts", $0) }
                + config.tunnels.map { ("tunnels", $0.name) } + config.groups.map { ("groups", $0.name) }
            var seen: [String: (section: String, name: String)] = [:]
            for item in named {
                if let first = seen[item.name.lowercased()] {
                    report([item.section, item.name], "name \"\(item.name)\" is already used by [\(first.section).\(first.name)]; tunnel, host and group names must differ, ignoring case (ssh matches Host names that way)")
                } else {
                    seen[item.name.lowercased()] = item
                }
            }
        }
    }
}
