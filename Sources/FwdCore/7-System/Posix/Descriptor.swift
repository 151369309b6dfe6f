import SystemPackage

/// An open descriptor that closes itself exactly once: when its owner lets it go, or through `close()`. It
/// cannot be copied, so no second owner can close a number the kernel has since handed to someone else.
/// Closing first wakes every `Reactor` wait on it (with `.closed`), so no wait outlives its descriptor and
/// none ever polls a reused number.
package struct Descriptor: ~Copyable {
    private let file: FileDescriptor

    /// Takes ownership of `raw`.
    package init(_ raw: Int32) {
        file = FileDescriptor(rawValue: raw)
    }

    package var raw: Int32 { file.rawValue }

    /// Gives up ownership without closing: for a descriptor handed to a child process or another owner.
    package consuming func release() -> Int32 {
        let raw = file.rawValue
        discard self
        return raw
    }

    /// Closes now (the same as letting it go, but explicit at the call site).
    package consuming func close() {}

    deinit {
        Reactor.retire(file.rawValue)
        // EINTR from close(2) still releases the number on Linux: never retried, never closed twice.
        try? file.close()
    }
}

/// Two descriptors made together: a pipe's ends, or a socketpair.
@frozen package struct DescriptorPair: ~Copyable {
    package var first: Descriptor
    package var second: Descriptor
}
