import Foundation

/// One rtnetlink message as fwd reads it: the parts of RTM_{NEW,DEL}{LINK,ADDR,ROUTE} that decide whether a
/// master's path changed. Pure: parsing works on bytes, so it is tested with constructed buffers on any platform.
enum NetlinkMessage: Equatable {
    case link(index: Int32, name: String?, up: Bool, removed: Bool)
    case address(index: Int32, address: String, prefix: Int, label: String?, removed: Bool)
    case route(destination: String, prefix: Int, outputIndex: Int32?, table: Int, removed: Bool)
    /// The kernel dropped messages (ENOBUFS) or sent one fwd does not know: something changed.
    case overflow

    static let newLink: UInt16 = 16, delLink: UInt16 = 17
    static let newAddr: UInt16 = 20, delAddr: UInt16 = 21
    static let newRoute: UInt16 = 24, delRoute: UInt16 = 25
    static let done: UInt16 = 3

    /// Every message in one datagram from a NETLINK_ROUTE socket (a datagram may hold several).
    static func parse(_ bytes: [UInt8]) -> [NetlinkMessage] {
        var result: [NetlinkMessage] = []
        var offset = 0
        while offset + 16 <= bytes.count {
            let length = Int(u32(bytes, offset))
            guard length >= 16, offset + length <= bytes.count else { break }
            let type = u16(bytes, offset + 4)
            let body = Array(bytes[(offset + 16)..<(offset + length)])
            if let message = parseBody(type: type, body) { result.append(message) }
            offset += align(length)
        }
        return result
    }

    private static func parseBody(type: UInt16, _ body: [UInt8]) -> NetlinkMessage? {
        switch type {
        case newLink, delLink:
            // struct ifinfomsg: family, pad, type(2), index(4), flags(4), change(4).
            guard body.count >= 16 else { return nil }
            let index = Int32(bitPattern: u32(body, 4))
            let flags = u32(body, 8)
            let attributes = attributesOf(body, from: 16)
            let name = attributes[3].map(cString)  // IFLA_IFNAME
            // Usable means administratively up (IFF_UP) with a carrier (IFF_LOWER_UP).
            return .link(index: index, name: name, up: flags & 0x1 != 0 && flags & 0x10000 != 0, removed: type == delLink)
        case newAddr, delAddr:
            // struct ifaddrmsg: family, prefixlen, flags, scope, index(4).
            guard body.count >= 8 else { return nil }
            let attributes = attributesOf(body, from: 8)
            // For IPv4 IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer on point-to-point links).
            guard let raw = attributes[2] ?? attributes[1], raw.count == 4 || raw.count == 16 else { return nil }
            return .address(index: Int32(bitPattern: u32(body, 4)), address: MasterPath.numeric(raw), prefix: Int(body[1]),
                            label: attributes[3].map(cString), removed: type == delAddr)
        case newRoute, delRoute:
            // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags(4).
            guard body.count >= 12 else { return nil }
            let family = body[0]
            let attributes = attributesOf(body, from: 12)
            let prefix = Int(body[1])
            let destination: String
            if let raw = attributes[1], raw.count == 4 || raw.count == 16 {  // RTA_DST
                destination = MasterPath.numeric(raw)
            } else {
                destination = family == 10 ? "::" : "0.0.0.0"
            }
            let table = attributes[15].flatMap { $0.count == 4 ? Int(u32($0, 0)) : nil } ?? Int(body[4])  // RTA_TABLE
            let oif = attributes[4].flatMap { $0.count == 4 ? Int32(bitPattern: u32($0, 0)) : nil }  // RTA_OIF
            return .route(destination: destination, prefix: prefix, outputIndex: oif, table: table, removed: type == delRoute)
        case done:
            return nil
        default:
            return nil
        }
    }

    /// rtattr list from `start`: type → payload (later duplicates lose).
    static func attributesOf(_ body: [UInt8], from start: Int) -> [UInt16: [UInt8]] {
        var result: [UInt16: [UInt8]] = [:]
        var offset = start
        while offset + 4 <= body.count {
            let length = Int(u16(body, offset))
            guard length >= 4, offset + length <= body.count else { break }
            // The top bits are NLA_F_NESTED / NLA_F_NET_BYTEORDER.
            let type = u16(body, offset + 2) & 0x3fff
            if result[type] == nil { result[type] = Array(body[(offset + 4)..<(offset + length)]) }
            offset += align(length)
        }
        return result
    }

    static func align(_ n: Int) -> Int { (n + 3) & ~3 }

    // Netlink uses host byte order.
    static func u16(_ b: [UInt8], _ at: Int) -> UInt16 {
        var v: UInt16 = 0
        withUnsafeMutableBytes(of: &v) { for i in 0..<2 { $0[i] = b[at + i] } }
        return v
    }

    static func u32(_ b: [UInt8], _ at: Int) -> UInt32 {
        var v: UInt32 = 0
        withUnsafeMutableBytes(of: &v) { for i in 0..<4 { $0[i] = b[at + i] } }
        return v
    }

    static func cString(_ b: [UInt8]) -> String { String(decoding: b.prefix { $0 != 0 }, as: UTF8.self) }
}

/// Turns netlink messages into `NetworkChange`s: names interfaces (an address message carries only an index),
/// and reports a link only when its usable state flips (RTM_NEWLINK also comes for every attribute change).
struct NetlinkInterpreter {
    private var names: [Int32: String] = [:]
    private var up: [Int32: Bool] = [:]
    /// Looks up an interface's name when no link message named it yet (if_indextoname); injected for tests.
    var nameOf: (Int32) -> String?

    init(nameOf: @escaping (Int32) -> String?) { self.nameOf = nameOf }

    mutating func name(_ index: Int32) -> String {
        if let n = names[index] { return n }
        let n = nameOf(index) ?? "if\(index)"
        names[index] = n
        return n
    }

    mutating func interpret(_ message: NetlinkMessage) -> NetworkChange? {
        switch message {
        case .link(let index, let name, let isUp, let removed):
            if let name { names[index] = name }
            let label = self.name(index)
            let now = isUp && !removed
            let before = up[index]
            up[index] = removed ? nil : now
            guard before != now else { return nil }
            return .linkChanged(interface: label, up: now)
        case .address(let index, let address, _, let label, let removed):
            let interface = label.flatMap { $0.isEmpty ? nil : $0 } ?? name(index)
            return removed ? .addressRemoved(address: address, interface: interface) : .addressAdded(address: address, interface: interface)
        case .route(let destination, let prefix, let index, let table, let removed):
            // Table 255 (local) holds a route per own address; its changes come with the address's own message.
            guard table != 255 else { return nil }
            let target = prefix == 0 ? "default" : "\(destination)/\(prefix)"
            return .routeChanged(destination: target, removed: removed, interface: index.map { name($0) })
        case .overflow:
            return .unspecified("the kernel dropped network events")
        }
    }
}
