import Testing

@testable import FwdCore

struct ParseCase: Sendable, CustomTestStringConvertible {
    var input: String
    var kind: ForwardKind
    var expected: ForwardSpec
    /// The canonical `text`, when it differs from the input.
    var canonical: String?

    init(_ input: String, _ kind: ForwardKind, _ listen: ForwardEndpoint, _ target: ForwardEndpoint?, text canonical: String? = nil) {
        self.input = input
        self.kind = kind
        self.expected = ForwardSpec(kind: kind, listen: listen, target: target)
        self.canonical = canonical
    }

    var testDescription: String { "\(kind.flag) \(input)" }
}

struct RejectCase: Sendable, CustomTestStringConvertible {
    var input: String
    var kind: ForwardKind
    /// A fragment the reason must contain.
    var because: String

    init(_ input: String, _ kind: ForwardKind, _ because: String) {
        self.input = input
        self.kind = kind
        self.because = because
    }

    var testDescription: String { "\(kind.flag) \(String(reflecting: input))" }
}

private func tcp(_ host: String?, _ port: Int) -> ForwardEndpoint { .tcp(host: host, port: port) }
private func unix(_ path: String) -> ForwardEndpoint { .unix(path: path) }

private func parseError(_ text: String, _ kind: ForwardKind) -> ForwardSpecError? {
    do {
        _ = try ForwardSpec.parse(text, kind: kind)
        return nil
    } catch {
        return error
    }
}

@Suite struct ForwardSpecTests {
    static let forms: [ParseCase] = [
        ParseCase("8080:wiki.lan:80", .local, tcp(nil, 8080), tcp("wiki.lan", 80)),
        ParseCase("127.0.0.1:8080:wiki.lan:80", .local, tcp("127.0.0.1", 8080), tcp("wiki.lan", 80)),
        ParseCase("*:8080:h:80", .local, tcp("*", 8080), tcp("h", 80)),
        ParseCase(":8080:h:80", .local, tcp("", 8080), tcp("h", 80)),
        ParseCase("[]:8080:h:80", .local, tcp("", 8080), tcp("h", 80), text: ":8080:h:80"),
        ParseCase("[::1]:8080:h:80", .local, tcp("::1", 8080), tcp("h", 80)),
        ParseCase("8080:[2001:db8::1]:80", .local, tcp(nil, 8080), tcp("2001:db8::1", 80)),
        ParseCase("localhost:5432:db:5432", .local, tcp("localhost", 5432), tcp("db", 5432)),
        ParseCase("/tmp/l.sock:h:80", .local, unix("/tmp/l.sock"), tcp("h", 80)),
        ParseCase("8080:/run/t.sock", .local, tcp(nil, 8080), unix("/run/t.sock")),
        ParseCase("127.0.0.1:8080:/run/t.sock", .local, tcp("127.0.0.1", 8080), unix("/run/t.sock")),
        ParseCase("/a/l.sock:/b/t.sock", .local, unix("/a/l.sock"), unix("/b/t.sock")),
        ParseCase("run/rel.sock:h:1", .local, unix("run/rel.sock"), tcp("h", 1)),
        // A bracketed path may contain ':' and is written back in brackets; without one it needs none.
        ParseCase("[/odd:path]:h:1", .local, unix("/odd:path"), tcp("h", 1)),
        ParseCase("[/tmp/x.sock]:h:1", .local, unix("/tmp/x.sock"), tcp("h", 1), text: "/tmp/x.sock:h:1"),
        ParseCase("8080:h:http", .local, tcp(nil, 8080), tcp("h", 80), text: "8080:h:80"),
        ParseCase("ssh:h:ssh", .local, tcp(nil, 22), tcp("h", 22), text: "22:h:22"),
        ParseCase("08080:h:0080", .local, tcp(nil, 8080), tcp("h", 80), text: "8080:h:80"),
        ParseCase("1:h:65535", .local, tcp(nil, 1), tcp("h", 65535)),
        // A backslash escapes one character, as in ssh; an escaped ':' joins an IPv6 address.
        ParseCase(#"8080:wiki\.lan:80"#, .local, tcp(nil, 8080), tcp("wiki.lan", 80), text: "8080:wiki.lan:80"),
        ParseCase(#"8080:fe80\:\:1:80"#, .local, tcp(nil, 8080), tcp("fe80::1", 80), text: "8080:[fe80::1]:80"),
        ParseCase("8080:[fe80::1%eth0]:80", .local, tcp(nil, 8080), tcp("fe80::1%eth0", 80)),
        ParseCase("8080:bücher.example:80", .local, tcp(nil, 8080), tcp("bücher.example", 80)),
        ParseCase("0:localhost:22", .remote, tcp(nil, 0), tcp("localhost", 22)),
        ParseCase("127.0.0.1:15432:localhost:5432", .remote, tcp("127.0.0.1", 15432), tcp("localhost", 5432)),
        ParseCase("/run/remote.sock:localhost:22", .remote, unix("/run/remote.sock"), tcp("localhost", 22)),
        ParseCase("1080", .remote, tcp(nil, 1080), nil),
        ParseCase("127.0.0.1:1080", .remote, tcp("127.0.0.1", 1080), nil),
        ParseCase("0", .remote, tcp(nil, 0), nil),
        ParseCase("socks", .remote, tcp(nil, 1080), nil, text: "1080"),
        ParseCase("1080", .dynamic, tcp(nil, 1080), nil),
        ParseCase("127.0.0.1:1080", .dynamic, tcp("127.0.0.1", 1080), nil),
        ParseCase("[::1]:1080", .dynamic, tcp("::1", 1080), nil),
        ParseCase("*:1080", .dynamic, tcp("*", 1080), nil),
        ParseCase(":1080", .dynamic, tcp("", 1080), nil),
    ]

    @Test(arguments: forms)
    func parsesEveryForm(_ c: ParseCase) throws {
        let spec = try ForwardSpec.parse(c.input, kind: c.kind)
        #expect(spec == c.expected)
        #expect(spec.text == (c.canonical ?? c.input))
        #expect(try ForwardSpec.parse(spec.text, kind: c.kind) == spec)
    }

    static let rejections: [RejectCase] = [
        RejectCase("", .local, "empty"),
        RejectCase("", .dynamic, "empty"),
        RejectCase("0:h:80", .local, "listen port 0 is only allowed with -R"),
        RejectCase("0", .dynamic, "listen port 0 is only allowed with -R"),
        RejectCase("65536:h:80", .local, "listen port 65536 is out of range (1-65535)"),
        RejectCase("65536:h:80", .remote, "listen port 65536 is out of range (0-65535)"),
        RejectCase("8080:h:70000", .local, "target port 70000 is out of range (1-65535)"),
        RejectCase("99999999999999999999999:h:80", .local, "out of range"),
        RejectCase("-1:h:80", .local, "neither a number"),
        RejectCase("+80:h:80", .local, "neither a number"),
        RejectCase("0x50:h:80", .local, "neither a number"),
        RejectCase("abc:h:80", .local, #"listen port "abc" is neither a number (1-65535) nor a known TCP service name"#),
        RejectCase("8080:h:nosuchservice", .local, "target port \"nosuchservice\""),
        RejectCase("abc", .dynamic, "neither a number"),
        RejectCase("8080:h:0", .local, "target port 0 is out of range"),
        RejectCase("8080:h:0", .remote, "target port 0 is out of range"),
        RejectCase("8080", .local, "missing the target, expected [bind_address:]port:host:hostport"),
        RejectCase("8080:h", .local, "missing the target"),
        RejectCase("/tmp/l.sock", .local, "missing the target"),
        RejectCase("8080:h", .remote, "listen port \"h\""),
        RejectCase("1:2:3:4:5", .local, "too many ':'-separated fields"),
        RejectCase("::1:8080:h:80", .local, "write IPv6 addresses in brackets"),
        RejectCase("1:2:3", .dynamic, "-D takes only a listen address"),
        RejectCase("8080:h:80", .dynamic, "-D takes only a listen address"),
        RejectCase("8080:/run/t.sock", .dynamic, "-D takes only a listen address"),
        RejectCase("/tmp/socks.sock", .dynamic, "SOCKS proxy on a UNIX socket"),
        RejectCase("/tmp/socks.sock", .remote, "SOCKS proxy on a UNIX socket"),
        RejectCase("/tmp/x:80", .dynamic, "contains '/'"),
        RejectCase("[::1:8080:h:80", .local, "has no matching ']'"),
        RejectCase("8080:[h:80", .local, "has no matching ']'"),
        RejectCase("[::1]x:8080:h:80", .local, "must be followed by ':'"),
        RejectCase("8080:h:80:", .local, "ends with ':'"),
        RejectCase("1080:", .dynamic, "ends with ':'"),
        RejectCase("8080:h:", .local, "ends with ':'"),
        RejectCase(":", .dynamic, "ends with ':'"),
        RejectCase("8080::80", .local, "target host is empty"),
        RejectCase("8080:h:", .remote, "ends with ':'"),
        RejectCase("1080:", .remote, "ends with ':'"),
        RejectCase("127.0.0.1::h:80", .local, "listen port is empty"),
        RejectCase(#"8080:h:80\"#, .local, "lone '\\'"),
        RejectCase(#"/tmp/a\:b:h:80"#, .local, "write it in brackets"),
        RejectCase(#"8080:h\[x:80"#, .local, "contains '['"),
        RejectCase(#"8080:h\\x:80"#, .local, "contains '\\'"),
        RejectCase("[/a]b]:h:80", .local, "must be followed by ':'"),
        RejectCase("8080:h:80 ", .local, "a space, which would be unsafe in ssh_config/argv"),
        RejectCase(" 8080:h:80", .local, "a space"),
        RejectCase("8080:h:80\nLocalForward 9:evil:22", .local, "a newline"),
        RejectCase("8080:h:80\r", .local, "a carriage return"),
        RejectCase("8080:h\t:80", .local, "a tab"),
        RejectCase("8080:h:80#comment", .local, "'#'"),
        RejectCase("8080:h\"x:80", .local, "'\"'"),
        RejectCase("8080:h'x:80", .local, "'''"),
        RejectCase("8080:${HOME}:80", .local, "'$'"),
        RejectCase("8080:`id`:80", .local, "'`'"),
        RejectCase("8080:h\0:80", .local, "a NUL byte"),
        RejectCase("8080:h\u{7}:80", .local, "U+7"),
        RejectCase("8080:h\u{200B}x:80", .local, "U+200B"),
        RejectCase("8080:h\u{A0}x:80", .local, "U+A0"),
        RejectCase("=1080", .dynamic, "starts with '='"),
        RejectCase("8080:-oProxyCommand=x:80", .local, "starts with '-', which would be unsafe"),
        RejectCase("-g:8080:h:80", .local, "bind address \"-g\" starts with '-'"),
        RejectCase("[-x]:1080", .dynamic, "starts with '-'"),
        RejectCase("8080:\(String(repeating: "a", count: 1025)):80", .local, "longer than 1024 bytes"),
        RejectCase("8080:\(String(repeating: "a", count: 250)):80", .local, "ssh_config truncates"),
        // 248 bytes as written, 258 once fwd adds "127.0.0.1:".
        RejectCase("1:\(String(repeating: "a", count: 244)):1", .local, "with its bind address"),
        RejectCase("/" + String(repeating: "s", count: 103) + ":h:80", .local, "must be shorter than 104 bytes"),
    ]

    @Test(arguments: rejections)
    func rejects(_ c: RejectCase) {
        let error = parseError(c.input, c.kind)
        #expect(error?.reason.contains(c.because) == true, "reason: \(error?.reason ?? "none (parsed)")")
        #expect(error?.spec == c.input)
        #expect(error?.kind == c.kind)
    }

    @Test func acceptsTheLongestAllowedValues() throws {
        let path = "/" + String(repeating: "s", count: 102)
        #expect(try ForwardSpec.parse("\(path):h:80", kind: .local).listen == unix(path))
        let host = String(repeating: "a", count: 241)
        let spec = try ForwardSpec.parse("1:\(host):1", kind: .local)
        #expect(spec.sshArgument.utf8.count == 255)
    }

    @Test func errorDescriptionNamesFlagSpecAndReason() {
        let error = parseError("x:h:80", .local)
        #expect(error?.description == #"bad -L forward "x:h:80": listen port "x" is neither a number (1-65535) nor a known TCP service name"#)
        let newline = parseError("1:h:2\n", .remote)
        #expect(newline?.description == #"bad -R forward "1:h:2\n": it contains a newline, which would be unsafe in ssh_config/argv"#)
    }

    @Test func kindsNameTheirFlagAndKeyword() {
        #expect(ForwardKind.allCases.map(\.flag) == ["-L", "-R", "-D"])
        #expect(ForwardKind.allCases.map(\.configKeyword) == ["LocalForward", "RemoteForward", "DynamicForward"])
    }

    @Test(arguments: [
        ("8080:wiki.lan:80", ForwardKind.local, "127.0.0.1:8080:wiki.lan:80", "LocalForward 127.0.0.1:8080 wiki.lan:80"),
        ("*:8080:wiki.lan:80", .local, "*:8080:wiki.lan:80", "LocalForward *:8080 wiki.lan:80"),
        (":8080:h:80", .local, ":8080:h:80", "LocalForward :8080 h:80"),
        ("[::1]:8080:[2001:db8::1]:80", .local, "[::1]:8080:[2001:db8::1]:80", "LocalForward [::1]:8080 [2001:db8::1]:80"),
        ("8080:/run/b.sock", .local, "127.0.0.1:8080:/run/b.sock", "LocalForward 127.0.0.1:8080 /run/b.sock"),
        ("/tmp/a.sock:/run/b.sock", .local, "/tmp/a.sock:/run/b.sock", "LocalForward /tmp/a.sock /run/b.sock"),
        ("[/odd:a]:h:1", .local, "[/odd:a]:h:1", "LocalForward [/odd:a] h:1"),
        ("0:localhost:22", .remote, "127.0.0.1:0:localhost:22", "RemoteForward 127.0.0.1:0 localhost:22"),
        ("1080", .remote, "127.0.0.1:1080", "RemoteForward 127.0.0.1:1080"),
        ("1080", .dynamic, "127.0.0.1:1080", "DynamicForward 127.0.0.1:1080"),
        ("[::1]:1080", .dynamic, "[::1]:1080", "DynamicForward [::1]:1080"),
    ])
    func rendersSSHArgumentAndConfigLine(input: String, kind: ForwardKind, argument: String, line: String) throws {
        let spec = try ForwardSpec.parse(input, kind: kind)
        #expect(spec.sshArgument == argument)
        #expect(spec.configLine == line)
        var explicit = spec
        if case .tcp(nil, let port) = spec.listen { explicit.listen = tcp("127.0.0.1", port) }
        #expect(try ForwardSpec.parse(argument, kind: kind) == explicit)
    }

    @Test(arguments: [
        ("8080:h:80", ForwardKind.local, true),
        ("localhost:8080:h:80", .local, true),
        ("LocalHost:8080:h:80", .local, true),
        ("127.0.0.1:8080:h:80", .local, true),
        ("127.45.6.7:8080:h:80", .local, true),
        ("127.1:8080:h:80", .local, true),
        ("[::1]:8080:h:80", .local, true),
        ("[0:0:0:0:0:0:0:1]:8080:h:80", .local, true),
        ("/tmp/l.sock:h:80", .local, true),
        ("*:8080:h:80", .local, false),
        (":8080:h:80", .local, false),
        ("0.0.0.0:8080:h:80", .local, false),
        ("[::]:8080:h:80", .local, false),
        ("192.168.1.5:8080:h:80", .local, false),
        ("128.0.0.1:8080:h:80", .local, false),
        ("wiki.lan:8080:h:80", .local, false),
        ("localhost.evil.example:8080:h:80", .local, false),
        ("0:localhost:22", .remote, true),
        ("*:0:localhost:22", .remote, false),
        ("1080", .dynamic, true),
        ("0.0.0.0:1080", .dynamic, false),
        ("[::1]:1080", .remote, true),
    ])
    func knowsWhoCanReachTheListener(input: String, kind: ForwardKind, loopback: Bool) throws {
        #expect(try ForwardSpec.parse(input, kind: kind).isLoopbackOnly == loopback)
    }

    @Test func describesTheListener() throws {
        let local = try ForwardSpec.parse("8080:h:80", kind: .local)
        #expect(!local.isDynamic && local.listenPort == 8080 && local.bindAddress == nil)
        let bound = try ForwardSpec.parse("[::1]:8080:h:80", kind: .local)
        #expect(bound.bindAddress == "::1" && bound.listenPort == 8080)
        let all = try ForwardSpec.parse(":8080:h:80", kind: .local)
        #expect(all.bindAddress == "")
        let socket = try ForwardSpec.parse("/tmp/l.sock:h:80", kind: .local)
        #expect(socket.listenPort == nil && socket.bindAddress == nil)
        let allocated = try ForwardSpec.parse("0:localhost:22", kind: .remote)
        #expect(allocated.listenPort == 0 && !allocated.isDynamic)
        let remoteSocks = try ForwardSpec.parse("127.0.0.1:1080", kind: .remote)
        #expect(remoteSocks.isDynamic && remoteSocks.target == nil && remoteSocks.bindAddress == "127.0.0.1")
        let socks = try ForwardSpec.parse("1080", kind: .dynamic)
        #expect(socks.isDynamic && socks.listenPort == 1080)
        #expect(socks.description == "1080")
    }

    @Test func randomSpecsRoundTripThroughTextAndSSHArgument() throws {
        var rng = FuzzRandom(seed: 0x5eed_f00d)
        var failures: [String] = []
        for _ in 0..<5000 {
            let spec = rng.spec()
            do {
                let parsed = try ForwardSpec.parse(spec.text, kind: spec.kind)
                if parsed != spec { failures.append("text \(spec.text) -> \(parsed)") }
                var explicit = spec
                if case .tcp(nil, let port) = spec.listen { explicit.listen = tcp("127.0.0.1", port) }
                let viaArgument = try ForwardSpec.parse(spec.sshArgument, kind: spec.kind)
                if viaArgument != explicit { failures.append("argument \(spec.sshArgument) -> \(viaArgument)") }
            } catch {
                failures.append(error.description)
            }
        }
        #expect(failures.isEmpty, "\(failures.prefix(5))")
    }

    @Test func garbageNeverCrashesAndAcceptedGarbageRoundTrips() {
        var rng = FuzzRandom(seed: 42)
        let pieces: [String] = [
            "[", "]", ":", ":", ":", "\\", "/", "0", "1", "8080", "65536", "h", "wiki.lan", "*", "-", ".",
            "::1", "http", " ", "\n", "#", "$", "é", "\u{301}", "\0", "%", "=", "'",
        ]
        var accepted = 0
        var failures: [String] = []
        for round in 0..<6000 {
            // Half pure noise, half a valid spec with a few characters changed.
            var text: String
            let kind = rng.pick(ForwardKind.allCases)
            if round.isMultiple(of: 2) {
                text = (0..<rng.int(0...12)).map { _ in rng.pick(pieces) }.joined()
            } else {
                var scalars = Array(rng.spec().text.unicodeScalars)
                for _ in 0..<rng.int(1...3) {
                    let at = rng.int(0...scalars.count)
                    let piece = Array(rng.pick(pieces).unicodeScalars)
                    switch rng.int(0...2) {
                    case 0: scalars.insert(contentsOf: piece, at: at)
                    case 1 where at < scalars.count: scalars.remove(at: at)
                    default: scalars.replaceSubrange(at..<min(at + 1, scalars.count), with: piece)
                    }
                }
                var view = String.UnicodeScalarView()
                view.append(contentsOf: scalars)
                text = String(view)
            }
            do {
                let spec = try ForwardSpec.parse(text, kind: kind)
                accepted += 1
                let again = try ForwardSpec.parse(spec.text, kind: kind)
                if again != spec { failures.append("\(String(reflecting: text)) -> \(spec.text) -> \(again)") }
                _ = try ForwardSpec.parse(spec.sshArgument, kind: kind)
            } catch {
                if error.reason.isEmpty || error.spec != text || error.kind != kind {
                    failures.append("unhelpful error for \(String(reflecting: text))")
                }
            }
        }
        #expect(failures.isEmpty, "\(failures.prefix(5))")
        // The mutations must leave some specs valid, or the round trip above proves nothing.
        #expect(accepted > 100)
    }
}

/// Generators of forward-spec parts, on FuzzTests' seeded generator so failures reproduce.
extension FuzzRandom {
    mutating func word(_ alphabet: String, _ length: ClosedRange<Int>) -> String {
        let letters = Array(alphabet)
        return String((0..<int(length)).map { _ in pick(letters) })
    }

    mutating func host() -> String {
        if chance(40) {
            return pick(["localhost", "127.0.0.1", "::1", "2001:db8::7", "fe80::1%eth0", "10.1.2.3", "bücher.example", "h"])
        }
        // Hosts may not start with '-'.
        return word("abcdefghijklmnopqrstuvwxyz0123456789", 1...1) + word("abcxyz0189.-_", 0...30)
    }

    mutating func bind() -> String? {
        if chance(35) { return nil }
        if chance(30) { return pick(["", "*", "0.0.0.0", "::", "localhost", "127.0.0.1", "::1"]) }
        return host()
    }

    mutating func path() -> String {
        // fwd refuses ".." components in socket paths, so the generator never makes one.
        let segments = (0..<int(1...4)).map { _ in word("abcxyz019._-", 1...12) }.map { $0 == ".." ? "x.." : $0 }
        var path = (chance(85) ? "/" : "") + segments.joined(separator: "/")
        if !path.contains("/") { path = "run/" + path }
        // Bracketed paths may hold ':'.
        if chance(15) { path += ":" + word("abc", 1...3) }
        return path
    }

    mutating func spec() -> ForwardSpec {
        let kind = pick(ForwardKind.allCases)
        let lowestListenPort = kind == .remote ? 0 : 1
        let listenPort = chance(5) ? lowestListenPort : int(lowestListenPort...65535)
        if kind == .dynamic || (kind == .remote && chance(20)) {
            return ForwardSpec(kind: kind, listen: .tcp(host: bind(), port: listenPort), target: nil)
        }
        let listen: ForwardEndpoint = chance(25) ? .unix(path: path()) : .tcp(host: bind(), port: listenPort)
        let target: ForwardEndpoint = chance(25) ? .unix(path: path()) : .tcp(host: host(), port: int(1...65535))
        return ForwardSpec(kind: kind, listen: listen, target: target)
    }
}
