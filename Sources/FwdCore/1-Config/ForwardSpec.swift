import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

package enum ForwardKind: String, Sendable, Hashable, Codable, CaseIterable {
    case local, remote, dynamic

    package var flag: String {
        switch self {
        case .local: "-L"
        case .remote: "-R"
        case .dynamic: "-D"
        }
    }

    package var configKeyword: String {
        switch self {
        case .local: "LocalForward"
        case .remote: "RemoteForward"
        case .dynamic: "DynamicForward"
        }
    }

    /// The forms this kind accepts, for error messages.
    var expectedForms: String {
        switch self {
        case .local: "[bind_address:]port:host:hostport (or a UNIX socket path on either side)"
        case .remote: "[bind_address:]port:host:hostport (or a UNIX socket path on either side), or [bind_address:]port for a SOCKS proxy"
        case .dynamic: "[bind_address:]port"
        }
    }
}

/// One side of a forward: a TCP host:port or a UNIX socket path.
package enum ForwardEndpoint: Hashable, Sendable {
    case tcp(host: String?, port: Int)  // host nil = not written by the user
    case unix(path: String)
}

package struct ForwardSpec: Hashable, Sendable, CustomStringConvertible {
    package var kind: ForwardKind
    package var listen: ForwardEndpoint
    /// nil for -D and for remote dynamic (-R [bind:]port).
    package var target: ForwardEndpoint?

    package init(kind: ForwardKind, listen: ForwardEndpoint, target: ForwardEndpoint?) {
        self.kind = kind
        self.listen = listen
        self.target = target
    }

    /// ssh_config reads a forward into a 256-byte buffer and silently truncates longer ones
    /// (readconf.c `fwdarg[256]`), so fwd refuses anything it could not write there intact.
    static let maxRenderedBytes = 255
    /// NI_MAXHOST is 1025 including the terminator.
    static let maxHostBytes = 1024
    /// sizeof(sun_path) on macOS; Linux allows 108, but the config must work on both.
    static let maxSocketPathBytes = 103

    /// Parses `text` exactly as ssh parses the argument of -L (kind .local), -R (.remote) or -D (.dynamic),
    /// plus fwd's safety rules (no characters that ssh_config or a shell-free argv could misread).
    package static func parse(_ text: String, kind: ForwardKind) throws(ForwardSpecError) -> ForwardSpec {
        let parsed: ForwardRange
        do {
            parsed = try ForwardSpecParser(kind: kind).parse(text)
        } catch {
            throw ForwardSpecError(spec: text, kind: kind, reason: error.text)
        }
        guard !parsed.isRange else {
            throw ForwardSpecError(spec: text, kind: kind, reason: "a port range stands for several forwards; write one port here")
        }
        return parsed.specs[0]
    }

    /// The spec as the user would write it (no bind address added).
    package var text: String {
        render(listenHost: nil)
    }

    /// The argument for ssh -L/-R/-D and `ssh -O forward|cancel`: a TCP listener always names its bind
    /// address, because with none ssh binds both 127.0.0.1 and ::1 and keeps running when only one is taken
    /// (and -R asks the server for "localhost").
    package var sshArgument: String {
        render(listenHost: "127.0.0.1")
    }

    /// The ssh_config line; there the listen side and the target are separate words.
    package var configLine: String {
        var words = [kind.configKeyword, Self.render(listen, defaultHost: "127.0.0.1")]
        if let target { words.append(Self.render(target, defaultHost: nil)) }
        return words.joined(separator: " ")
    }

    package var description: String { text }

    /// -D, or -R with no target (a SOCKS proxy on the server).
    package var isDynamic: Bool { target == nil }

    /// nil for a UNIX socket listener; 0 means the server allocates one (-R only).
    package var listenPort: Int? {
        guard case .tcp(_, let port) = listen else { return nil }
        return port
    }

    /// The listen host as written; nil if none was written or the listener is a UNIX socket.
    package var bindAddress: String? {
        guard case .tcp(let host, _) = listen else { return nil }
        return host
    }

    /// For a -D TCP listener, the proxy URL a client takes (`curl -x`, `ALL_PROXY`): `socks5h`, so names are
    /// resolved on the far side. A wildcard bind address is reached through 127.0.0.1.
    package var socksURL: String? {
        guard kind == .dynamic, case .tcp(let host, let port) = listen else { return nil }
        var address = host ?? "127.0.0.1"
        if ["", "*", "0.0.0.0"].contains(address) { address = "127.0.0.1" }
        if address == "::" { address = "::1" }
        return "socks5h://\(address.contains(":") ? "[\(address)]" : address):\(port)"
    }

    /// True when only this machine (-L/-D), or only the server's loopback (-R), can reach the listener.
    package var isLoopbackOnly: Bool {
        guard case .tcp(let host, _) = listen, let host else { return true }
        return Self.isLoopbackAddress(host)
    }

    private func render(listenHost: String?) -> String {
        var parts = [Self.render(listen, defaultHost: listenHost)]
        if let target { parts.append(Self.render(target, defaultHost: nil)) }
        return parts.joined(separator: ":")
    }

    static func render(_ endpoint: ForwardEndpoint, defaultHost: String?, portText: String? = nil) -> String {
        switch endpoint {
        case .unix(let path):
            return bracketed(path)
        case .tcp(let host, let port):
            let port = portText ?? String(port)
            guard let host = host ?? defaultHost else { return port }
            return "\(bracketed(host)):\(port)"
        }
    }

    /// ssh splits on ':', so IPv6 addresses (and socket paths given in brackets) must be bracketed; so must a
    /// path starting with '=', which ssh_config would drop. Scalars, not Characters: ':' followed by a combining
    /// mark is one Character, but ssh still splits there.
    private static func bracketed(_ value: String) -> String {
        value.unicodeScalars.contains(":") || value.hasPrefix("=") ? "[\(value)]" : value
    }

    static func isLoopbackAddress(_ host: String) -> Bool {
        if host.lowercased() == "localhost" { return true }
        // inet_aton accepts the same shorthand ("127.1") that getaddrinfo does when ssh binds.
        var v4 = in_addr()
        if inet_aton(host, &v4) != 0 {
            return UInt32(bigEndian: v4.s_addr) >> 24 == 127
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) } == Array(repeating: 0, count: 15) + [1]
        }
        return false
    }
}

package struct ForwardSpecError: Error, Equatable, Sendable, CustomStringConvertible {
    package var spec: String
    package var kind: ForwardKind
    /// What is wrong and what is expected.
    package var reason: String

    package init(spec: String, kind: ForwardKind, reason: String) {
        self.spec = spec
        self.kind = kind
        self.reason = reason
    }

    package var description: String {
        // String(reflecting:) quotes the spec and escapes newlines and control characters.
        "bad \(kind.flag) forward \(String(reflecting: spec)): \(reason)"
    }
}

/// A forward as written in fwd.toml or on `fwd add`: one spec, or a port range
/// (`60000-60009:ftp.lan:60000-60009`) that stands for one forward per port. ssh has no ranges: fwd adds
/// each port's forward to the master and writes one LocalForward/RemoteForward line per port.
package struct ForwardRange: Sendable, Hashable {
    /// Each port is its own `ssh -O forward` on the master and its own line in ssh_config; FTP servers'
    /// passive ranges are usually 10–100 ports.
    package static let maxPorts = 100

    package var kind: ForwardKind
    /// As written, with the ranges as `FIRST-LAST`.
    package var text: String
    /// One forward per port, in port order.
    package var specs: [ForwardSpec]
    /// False for a plain spec (one forward, no range written).
    package var isRange: Bool

    /// Parses a spec as `ForwardSpec.parse` does, plus a `FIRST-LAST` port range on both sides.
    package static func parse(_ text: String, kind: ForwardKind) throws(ForwardSpecError) -> ForwardRange {
        do {
            return try ForwardSpecParser(kind: kind).parse(text)
        } catch {
            throw ForwardSpecError(spec: text, kind: kind, reason: error.text)
        }
    }
}

private struct Reason: Error {
    var text: String
    init(_ text: String) { self.text = text }
}

/// One ':'-separated field, as readconf.c's parse_fwd_field yields it.
private struct Field {
    var value: String
    var isPath: Bool
    var bracketed: Bool
}

private enum RawSide {
    case tcp(host: Field?, port: Field)
    case unix(Field)
}

private struct ForwardSpecParser {
    var kind: ForwardKind

    func parse(_ text: String) throws(Reason) -> ForwardRange {
        if text.isEmpty {
            throw Reason("the spec is empty; expected \(kind.expectedForms)")
        }
        try checkSafeCharacters(text)
        let fields = try split(text)
        var (rawListen, rawTarget) = assign(fields)
        let listenRange = try takeRange(&rawListen)
        var targetRange: ClosedRange<Int>?
        if rawTarget != nil { targetRange = try takeRange(&rawTarget!) }

        switch (kind, rawTarget, rawListen) {
        case (.dynamic, .some, _):
            throw Reason("-D takes only a listen address, expected \(kind.expectedForms)")
        case (.local, nil, _):
            throw Reason("missing the target, expected \(kind.expectedForms)")
        case (_, nil, .unix):
            throw Reason("ssh cannot usefully run a SOCKS proxy on a UNIX socket; \(kind.flag) without a target takes [bind_address:]port")
        default:
            break
        }

        let listen = try endpoint(rawListen, isListen: true)
        let target = try rawTarget.map { side throws(Reason) in try endpoint(side, isListen: false) }
        let first = ForwardSpec(kind: kind, listen: listen, target: target)
        guard listenRange != nil || targetRange != nil else {
            try checkLength(first)
            return ForwardRange(kind: kind, text: first.text, specs: [first], isRange: false)
        }
        let (ports, targetPorts) = try checkRange(listenRange, targetRange, first)
        var specs: [ForwardSpec] = []
        for (port, targetPort) in zip(ports, targetPorts) {
            var spec = first
            if case .tcp(let host, _) = listen { spec.listen = .tcp(host: host, port: port) }
            if case .tcp(let host, _)? = target { spec.target = .tcp(host: host, port: targetPort) }
            try checkLength(spec)
            specs.append(spec)
        }
        let written = [ForwardSpec.render(listen, defaultHost: nil, portText: "\(ports.lowerBound)-\(ports.upperBound)"),
                       ForwardSpec.render(target!, defaultHost: nil, portText: "\(targetPorts.lowerBound)-\(targetPorts.upperBound)")]
        return ForwardRange(kind: kind, text: written.joined(separator: ":"), specs: specs, isRange: true)
    }

    private func checkLength(_ spec: ForwardSpec) throws(Reason) {
        let length = spec.sshArgument.utf8.count
        if length > ForwardSpec.maxRenderedBytes {
            throw Reason("the forward is \(length) bytes with its bind address; ssh_config truncates forwards longer than \(ForwardSpec.maxRenderedBytes) bytes")
        }
    }

    /// A TCP port field written `FIRST-LAST` (decimal only: service names may contain '-'); the field keeps
    /// FIRST, so the rest of the parser checks it like any port.
    private func takeRange(_ side: inout RawSide) throws(Reason) -> ClosedRange<Int>? {
        guard case .tcp(let host, var port) = side, !port.bracketed else { return nil }
        let parts = port.value.split(separator: "-", maxSplits: 2, omittingEmptySubsequences: false)
        let isDecimal = { (s: Substring) in !s.isEmpty && s.utf8.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") } }
        guard parts.count == 2, isDecimal(parts[0]), isDecimal(parts[1]) else {
            // Service names may hold '-' and digits ("pop-3"); a name getservbyname knows is one port.
            if parts.count > 1, isDecimal(parts[0]), tcpServicePort(port.value) == nil {
                throw Reason("\"\(port.value)\" is not a port range; write FIRST-LAST in decimal, e.g. 60000-60009")
            }
            return nil
        }
        guard let low = Int(parts[0]), let high = Int(parts[1]), low <= 65535, high <= 65535 else {
            throw Reason("the port range \(port.value) goes beyond 65535")
        }
        guard low <= high else {
            throw Reason("the port range \(port.value) runs backwards; write the lower port first (\(high)-\(low))")
        }
        guard low > 0 else {
            throw Reason("the port range \(port.value) starts at 0; a range names its ports, so start at 1 or above")
        }
        port.value = String(low)
        side = .tcp(host: host, port: port)
        return low...high
    }

    /// Ranges are fwd's extension of ssh's syntax: each side gets the same number of ports, and ssh sees
    /// only the single-port forwards they expand to.
    private func checkRange(_ listen: ClosedRange<Int>?, _ target: ClosedRange<Int>?, _ first: ForwardSpec) throws(Reason) -> (ClosedRange<Int>, ClosedRange<Int>) {
        if first.target == nil {
            throw Reason("a port range needs a target: a range of SOCKS proxies is not supported; write one port")
        }
        guard let listen else {
            throw Reason("the target is a port range but the listen side is one port; give both sides ranges of the same length, e.g. 60000-60009:host:60000-60009")
        }
        guard let target else {
            if case .unix = first.target! {
                throw Reason("a UNIX socket target cannot take a port range; give both sides TCP port ranges")
            }
            throw Reason("the listen side is a port range but the target is one port; give both sides ranges of the same length, e.g. \(listen.lowerBound)-\(listen.upperBound):host:\(listen.lowerBound)-\(listen.upperBound)")
        }
        if listen.count != target.count {
            throw Reason("the listen range has \(listen.count) ports and the target range \(target.count); both sides need the same number")
        }
        if listen.count > ForwardRange.maxPorts {
            throw Reason("the range has \(listen.count) ports; fwd forwards at most \(ForwardRange.maxPorts) ports per range (each is its own forward on the master)")
        }
        return (listen, target)
    }

    private func checkSafeCharacters(_ text: String) throws(Reason) {
        // readconf skips ssh_config's "Keyword = value" '=' before the first argument.
        if text.hasPrefix("=") {
            throw Reason("it starts with '=', which ssh_config would drop")
        }
        for c in text.unicodeScalars {
            let name: String?
            switch c {
            case " ": name = "a space"
            case "\t": name = "a tab"
            case "\n": name = "a newline"
            case "\r": name = "a carriage return"
            case "\0": name = "a NUL byte"
            case "#", "\"", "'", "$", "`": name = "'\(c)'"
            default:
                let category = c.properties.generalCategory
                if c.properties.isWhitespace || category == .control || category == .format {
                    name = "the character U+\(String(c.value, radix: 16, uppercase: true))"
                } else {
                    name = nil
                }
            }
            if let name {
                throw Reason("it contains \(name), which would be unsafe in ssh_config/argv")
            }
        }
    }

    /// Splits like parse_fwd_field: '[' ... ']' is literal, a backslash escapes the next character
    /// elsewhere, and a field with a '/' (not an escaped one) is a UNIX socket path.
    private func split(_ text: String) throws(Reason) -> [Field] {
        let s = Array(text.unicodeScalars)
        var fields: [Field] = []
        var i = 0
        var endsWithSeparator = false
        while i < s.count {
            if fields.count == 4 {
                throw Reason("too many ':'-separated fields, expected \(kind.expectedForms); write IPv6 addresses in brackets, e.g. [::1]")
            }
            var value = String.UnicodeScalarView()
            if s[i] == "[" {
                guard let close = s[(i + 1)...].firstIndex(of: "]") else {
                    throw Reason("the '[' at offset \(i) has no matching ']'")
                }
                let after = close + 1
                if after < s.count && s[after] != ":" {
                    throw Reason("the ']' at offset \(close) must be followed by ':' or the end of the spec")
                }
                value.append(contentsOf: s[(i + 1)..<close])
                let field = String(value)
                fields.append(Field(value: field, isPath: field.contains("/"), bracketed: true))
                endsWithSeparator = after < s.count
                i = after + 1
                continue
            }
            var isPath = false
            endsWithSeparator = false
            while i < s.count {
                let c = s[i]
                i += 1
                if c == "\\" {
                    guard i < s.count else {
                        throw Reason("it ends with a lone '\\'; a backslash escapes the character after it")
                    }
                    value.append(s[i])
                    i += 1
                } else if c == ":" {
                    endsWithSeparator = true
                    break
                } else {
                    if c == "/" { isPath = true }
                    value.append(c)
                }
            }
            fields.append(Field(value: String(value), isPath: isPath, bracketed: false))
        }
        // ssh ignores one trailing ':'; it more likely marks a missing part, so fwd asks.
        if endsWithSeparator {
            throw Reason("it ends with ':', expected \(kind.expectedForms)")
        }
        return fields
    }

    /// The meaning of each field count, as in parse_forward.
    private func assign(_ f: [Field]) -> (listen: RawSide, target: RawSide?) {
        switch f.count {
        case 1:
            return (f[0].isPath ? .unix(f[0]) : .tcp(host: nil, port: f[0]), nil)
        case 2:
            if f[1].isPath {
                return (f[0].isPath ? .unix(f[0]) : .tcp(host: nil, port: f[0]), .unix(f[1]))
            }
            return (.tcp(host: f[0], port: f[1]), nil)
        case 3:
            if f[0].isPath { return (.unix(f[0]), .tcp(host: f[1], port: f[2])) }
            if f[2].isPath { return (.tcp(host: f[0], port: f[1]), .unix(f[2])) }
            return (.tcp(host: nil, port: f[0]), .tcp(host: f[1], port: f[2]))
        default:
            return (.tcp(host: f[0], port: f[1]), .tcp(host: f[2], port: f[3]))
        }
    }

    private func endpoint(_ side: RawSide, isListen: Bool) throws(Reason) -> ForwardEndpoint {
        switch side {
        case .unix(let field):
            return .unix(path: try socketPath(field))
        case .tcp(let hostField, let portField):
            let host = try hostField.map { field throws(Reason) in try self.host(field, isListen: isListen) }
            return .tcp(host: host, port: try port(portField.value, isListen: isListen))
        }
    }

    private func host(_ field: Field, isListen: Bool) throws(Reason) -> String {
        let role = isListen ? "bind address" : "target host"
        let host = field.value
        if host.utf8.count > ForwardSpec.maxHostBytes {
            throw Reason("the \(role) is longer than \(ForwardSpec.maxHostBytes) bytes")
        }
        if host.isEmpty && !isListen {
            throw Reason("the target host is empty, expected \(kind.expectedForms)")
        }
        if host.hasPrefix("-") {
            throw Reason("the \(role) \"\(host)\" starts with '-', which would be unsafe in ssh_config/argv")
        }
        if host.contains("/") {
            throw Reason("the \(role) \"\(host)\" contains '/'; a UNIX socket path has no port, expected \(kind.expectedForms)")
        }
        try checkRenderable(host, role: role)
        return host
    }

    private func socketPath(_ field: Field) throws(Reason) -> String {
        let path = field.value
        let length = path.utf8.count
        if length > ForwardSpec.maxSocketPathBytes {
            throw Reason("the socket path is \(length) bytes; UNIX socket paths must be shorter than \(ForwardSpec.maxSocketPathBytes + 1) bytes")
        }
        if path.contains(":") && !field.bracketed {
            throw Reason("the socket path \"\(path)\" contains ':'; write it in brackets, e.g. [\(path)]")
        }
        // Bytes, not Characters: in "a/../\u{301}x" the '/' after ".." joins the accent into one Character.
        if path.utf8.split(separator: UInt8(ascii: "/")).contains(where: { $0.elementsEqual("..".utf8) }) {
            throw Reason("the socket path \"\(path)\" contains '..'; write the path without parent-directory steps")
        }
        try checkRenderable(path, role: "socket path")
        return path
    }

    /// Values are written back without escapes, so characters that would need one are refused.
    private func checkRenderable(_ value: String, role: String) throws(Reason) {
        for c in ["[", "]", "\\"] where value.contains(c) {
            throw Reason("the \(role) \"\(value)\" contains '\(c)', which fwd cannot write back safely")
        }
    }

    /// a2port: a decimal number 0-65535 or a TCP service name. fwd takes no sign or spaces.
    private func port(_ text: String, isListen: Bool) throws(Reason) -> Int {
        let role = isListen ? "listen port" : "target port"
        let lowest = isListen && kind == .remote ? 0 : 1
        let port: Int
        if text.isEmpty {
            throw Reason("the \(role) is empty, expected \(kind.expectedForms)")
        } else if text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) {
            guard let number = Int(text), number <= 65535 else {
                throw Reason("\(role) \(text) is out of range (\(lowest)-65535)")
            }
            port = number
        } else if let number = tcpServicePort(text) {
            port = number
        } else {
            throw Reason("\(role) \"\(text)\" is neither a number (\(lowest)-65535) nor a known TCP service name")
        }
        if port == 0 && lowest == 1 {
            throw Reason(isListen
                ? "listen port 0 is only allowed with -R (the server picks a free port); use 1-65535"
                : "target port 0 is out of range (1-65535)")
        }
        return port
    }
}

/// getservbyname returns a pointer to static storage.
private let servicesLock = NSLock()

private func tcpServicePort(_ name: String) -> Int? {
    servicesLock.lock()
    defer { servicesLock.unlock() }
    guard let entry = getservbyname(name, "tcp") else { return nil }
    return Int(UInt16(bigEndian: UInt16(truncatingIfNeeded: entry.pointee.s_port)))
}
