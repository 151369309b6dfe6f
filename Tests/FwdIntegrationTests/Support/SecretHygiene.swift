import Foundation
@testable import FwdCore

/// Looks for a secret everywhere fwd could have leaked it: files under the given directories (state dir,
/// logs, the SQLite database with its -wal and -shm), single files, and the command lines and environments of
/// the given processes. Returns where it was found; empty means nowhere.
enum SecretHygiene {
    static func findings(of secret: String, directories: [String] = [], files: [String] = [], pids: [Int32] = []) -> [String] {
        precondition(secret.utf8.count >= 6, "a short needle would match by chance")
        let needles = [Array(secret.utf8), secret.utf16.flatMap { [UInt8($0 & 0xff), UInt8($0 >> 8)] }]
        var places: [String] = []
        func check(_ path: String) {
            guard let data = FileManager.default.contents(atPath: path) else { return }
            let bytes = [UInt8](data)
            if needles.contains(where: { contains(bytes, $0) }) { places.append(path) }
        }
        for directory in directories {
            guard let walker = FileManager.default.enumerator(atPath: directory) else { continue }
            for case let relative as String in walker {
                let path = directory + "/" + relative
                var isDirectory: ObjCBool = false
                // Sockets and fifos cannot be read as files; skip everything that is not a regular file.
                guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue,
                      (try? FileManager.default.attributesOfItem(atPath: path)[.type] as? FileAttributeType) == .typeRegular else { continue }
                check(path)
            }
        }
        files.forEach(check)
        for pid in pids {
            check("/proc/\(pid)/cmdline")
            check("/proc/\(pid)/environ")
        }
        return places
    }

    /// `root` and every process below it, for checking a master and whatever it started.
    static func processTree(of root: Int32) -> [Int32] {
        var tree = [root], index = 0
        while index < tree.count {
            tree += ProcessTable.children(of: tree[index])
            index += 1
        }
        return tree
    }

    private static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, haystack.count >= needle.count else { return false }
        let first = needle[0]
        var i = 0
        while i <= haystack.count - needle.count {
            if haystack[i] == first && haystack[i..<(i + needle.count)].elementsEqual(needle) { return true }
            i += 1
        }
        return false
    }
}
