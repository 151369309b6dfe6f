/// An application-level round trip for one protocol: what the probe sends first (nothing when the server
/// speaks first) and how it judges the bytes that come back. A port that answers with another protocol is
/// told apart from one that answers right, so a hung or wrong service never reads `up`.
struct ProtocolCheck: Sendable {
    enum Verdict: Sendable, Equatable {
        /// The bytes so far are this protocol's answer.
        case matches
        /// A prefix of a valid answer: read more.
        case needMore
        /// This protocol, but the server refuses service (e.g. MySQL "Too many connections", SMTP 554).
        case refuses(String)
        case otherProtocol
    }

    /// The most a probe reads of one answer (docs/reliability.md, "Bounded reads"): every check decides within
    /// its first few hundred bytes, so more than this is a service that never completes an answer.
    static let receiveLimit = 64 * 1024

    /// How the protocol is called in messages ("answered, but not as PostgreSQL").
    var name: String
    var request: [UInt8]?
    var judge: @Sendable ([UInt8]) -> Verdict

    static func check(for kind: ProbeKind, hostHeader: String) -> ProtocolCheck? {
        switch kind {
        case .http: http(hostHeader: hostHeader)
        case .postgres: postgres
        case .mysql: mysql
        case .ssh: ssh
        case .tls: tls(serverName: hostHeader)
        case .smtp: greeting("SMTP", ok: ["220"], refusing: ["421", "554"])
        case .ftp: greeting("FTP", ok: ["220"], refusing: ["120", "421"])
        case .imap: imap
        case .pop3: pop3
        case .rdp: rdp
        case .vnc: vnc
        case .redis: redis
        case .banner: banner
        case .tcp, .socks, .remote, .none: nil
        }
    }

    /// Server-first protocols, to name what a port answered instead.
    static let greeters: [ProtocolCheck] = [
        ssh, mysql, vnc, imap, pop3, greeting("SMTP or FTP", ok: ["220"], refusing: []),
    ]

    static let banner = ProtocolCheck(name: "a banner", request: nil) { $0.isEmpty ? .needMore : .matches }

    static func http(hostHeader: String) -> ProtocolCheck {
        let request = "GET / HTTP/1.1\r\nHost: \(hostHeader)\r\nConnection: close\r\nUser-Agent: fwd-probe\r\n\r\n"
        return ProtocolCheck(name: "HTTP", request: Array(request.utf8)) { prefix($0, "HTTP/") }
    }

    /// SSLRequest (length 8, code 80877103); the server answers one byte before any authentication.
    static let postgres = ProtocolCheck(name: "PostgreSQL", request: [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]) { bytes in
        guard let first = bytes.first else { return .needMore }
        return first == UInt8(ascii: "S") || first == UInt8(ascii: "N") ? (bytes.count == 1 ? .matches : .otherProtocol) : .otherProtocol
    }

    /// The initial handshake packet: 3-byte length, sequence 0, protocol version 10; or an error packet (0xff).
    static let mysql = ProtocolCheck(name: "MySQL", request: nil) { bytes in
        guard bytes.count >= 5 else { return .needMore }
        let length = Int(bytes[0]) | Int(bytes[1]) << 8 | Int(bytes[2]) << 16
        guard bytes[3] == 0, length > 0, length < 1 << 16 else { return .otherProtocol }
        switch bytes[4] {
        case 10: return .matches
        case 0xff:
            let text = bytes.count > 7 ? String(decoding: bytes[7...].prefix(120), as: UTF8.self) : ""
            return .refuses("MySQL refused the connection: \(text.trimmingCharacters(in: .controlCharacters))")
        default: return .otherProtocol
        }
    }

    static let ssh = ProtocolCheck(name: "SSH", request: nil) { bytes in
        let v2 = prefix(bytes, "SSH-2.0-")
        return v2 == .otherProtocol ? prefix(bytes, "SSH-1.99-") : v2
    }

    static let imap = ProtocolCheck(name: "IMAP", request: nil) { bytes in
        for ok in ["* OK", "* PREAUTH"] where prefix(bytes, ok) != .otherProtocol { return prefix(bytes, ok) }
        if prefix(bytes, "* BYE") == .matches { return .refuses("the IMAP server said BYE: \(line(bytes))") }
        return prefix(bytes, "* BYE")
    }

    static let pop3 = ProtocolCheck(name: "POP3", request: nil) { bytes in
        if prefix(bytes, "-ERR") == .matches { return .refuses("the POP3 server refused: \(line(bytes))") }
        return prefix(bytes, "+OK") == .otherProtocol ? prefix(bytes, "-ERR") : prefix(bytes, "+OK")
    }

    /// A three-digit reply code and a space or dash (SMTP, FTP).
    static func greeting(_ name: String, ok: [String], refusing: [String]) -> ProtocolCheck {
        ProtocolCheck(name: name, request: nil) { bytes in
            guard bytes.count >= 4 else {
                return bytes.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) } ? .needMore : .otherProtocol
            }
            guard bytes[3] == UInt8(ascii: " ") || bytes[3] == UInt8(ascii: "-") else { return .otherProtocol }
            let code = String(decoding: bytes.prefix(3), as: UTF8.self)
            if ok.contains(code) { return .matches }
            if refusing.contains(code) { return .refuses("the \(name) server refused: \(line(bytes))") }
            return .otherProtocol
        }
    }

    /// TPKT + X.224 Connection Request carrying an RDP negotiation request (TLS and CredSSP); the server
    /// answers with a Connection Confirm (TPDU code 0xd0).
    static let rdp = ProtocolCheck(name: "RDP", request: [
        3, 0, 0, 19,                 // TPKT, length 19
        14, 0xe0, 0, 0, 0, 0, 0,     // X.224 CR
        1, 0, 8, 0, 3, 0, 0, 0,      // RDP_NEG_REQ: PROTOCOL_SSL | PROTOCOL_HYBRID
    ]) { bytes in
        guard bytes.count >= 6 else { return bytes.first.map { $0 == 3 ? .needMore : .otherProtocol } ?? .needMore }
        return bytes[0] == 3 && bytes[1] == 0 && bytes[5] & 0xf0 == 0xd0 ? .matches : .otherProtocol
    }

    /// "RFB 003.008\n"
    static let vnc = ProtocolCheck(name: "VNC (RFB)", request: nil) { bytes in
        let head = prefix(bytes, "RFB ")
        guard head == .matches else { return head }
        return bytes.count >= 12 ? (bytes[11] == UInt8(ascii: "\n") ? .matches : .otherProtocol) : .needMore
    }

    /// PING → +PONG. A server that wants a password answers -NOAUTH: that is Redis, alive.
    static let redis = ProtocolCheck(name: "Redis", request: Array("PING\r\n".utf8)) { bytes in
        for ok in ["+PONG", "-NOAUTH", "-WRONGPASS"] where prefix(bytes, ok) != .otherProtocol { return prefix(bytes, ok) }
        if bytes.first == UInt8(ascii: "-") {
            return bytes.contains(UInt8(ascii: "\n")) ? .refuses("Redis answered with an error: \(line(bytes))") : .needMore
        }
        return .otherProtocol
    }

    /// A TLS 1.2 record carrying a ClientHello that offers TLS 1.3 and 1.2 (with an empty key share, so a 1.3
    /// server answers with a HelloRetryRequest, itself a ServerHello message). The reply must be a handshake
    /// record whose first message is ServerHello (type 2); an alert record is TLS refusing.
    static func tls(serverName: String) -> ProtocolCheck {
        ProtocolCheck(name: "TLS", request: clientHello(serverName: serverName)) { bytes in
            guard bytes.count >= 6 else {
                guard let first = bytes.first else { return .needMore }
                return first == 0x16 || first == 0x15 ? (bytes.count < 2 || bytes[1] == 3 ? .needMore : .otherProtocol) : .otherProtocol
            }
            guard bytes[1] == 3 else { return .otherProtocol }
            if bytes[0] == 0x15 { return .refuses("the TLS server sent alert \(bytes.count > 6 ? bytes[6] : 0) to fwd's ClientHello") }
            return bytes[0] == 0x16 && bytes[5] == 2 ? .matches : .otherProtocol
        }
    }

    static func clientHello(serverName: String) -> [UInt8] {
        func u16(_ v: Int) -> [UInt8] { [UInt8(v >> 8 & 0xff), UInt8(v & 0xff)] }
        func ext(_ type: Int, _ body: [UInt8]) -> [UInt8] { u16(type) + u16(body.count) + body }
        let suites: [Int] = [0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc009, 0xc013,
                             0xc00a, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035]
        var extensions: [UInt8] = []
        // SNI only for a name; an address literal is not allowed there.
        let isName = !serverName.isEmpty && !serverName.contains(":") && serverName.contains(where: \.isLetter)
            && !serverName.hasPrefix("[") && serverName.utf8.count < 200
        if isName {
            let host = Array(serverName.split(separator: ":").first.map(String.init)?.utf8 ?? "".utf8)
            extensions += ext(0, u16(host.count + 3) + [0] + u16(host.count) + host)
        }
        extensions += ext(10, u16(6) + u16(0x001d) + u16(0x0017) + u16(0x0018))          // supported_groups
        extensions += ext(11, [1, 0])                                                     // ec_point_formats
        let signatures = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601, 0x0201]
        extensions += ext(13, u16(signatures.count * 2) + signatures.flatMap(u16))        // signature_algorithms
        extensions += ext(43, [4] + u16(0x0304) + u16(0x0303))                           // supported_versions
        extensions += ext(45, [1, 1])                                                     // psk_key_exchange_modes
        extensions += ext(51, u16(0))                                                     // key_share (empty)
        var hello: [UInt8] = [3, 3] + (0..<32).map { _ in UInt8.random(in: 0...255) }
        hello += [32] + (0..<32).map { _ in UInt8.random(in: 0...255) }
        hello += u16(suites.count * 2) + suites.flatMap(u16) + [1, 0]
        hello += u16(extensions.count) + extensions
        let handshake: [UInt8] = [1, UInt8(hello.count >> 16), UInt8(hello.count >> 8 & 0xff), UInt8(hello.count & 0xff)] + hello
        return [0x16, 3, 1] + u16(handshake.count) + handshake
    }

    /// Whether `bytes` is, or could still become, `text` followed by anything.
    static func prefix(_ bytes: [UInt8], _ text: String) -> Verdict {
        let expected = Array(text.utf8)
        let compared = min(bytes.count, expected.count)
        guard bytes.prefix(compared).elementsEqual(expected.prefix(compared)) else { return .otherProtocol }
        return bytes.count >= expected.count ? .matches : .needMore
    }

    static func line(_ bytes: [UInt8]) -> String {
        let first = bytes.prefix { $0 != UInt8(ascii: "\r") && $0 != UInt8(ascii: "\n") }
        return String(decoding: first.prefix(120), as: UTF8.self)
    }
}
