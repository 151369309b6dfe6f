/// An optional that JSON output writes as `null` rather than leaving its key out (what Swift's synthesized
/// `Encodable` does with nil), so every documented key of fwd's `--json` shapes is always present.
@propertyWrapper
package struct JSONNull<Value: Encodable>: Encodable {
    package var wrappedValue: Value?

    package init(wrappedValue: Value?) { self.wrappedValue = wrappedValue }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        if let value = wrappedValue { try container.encode(value) } else { try container.encodeNil() }
    }
}

extension JSONNull: Sendable where Value: Sendable {}
extension JSONNull: Equatable where Value: Equatable {}
