import CSanaKernels

/// How a tensor's elements are stored. Raw values are the C `sana_type` values and part of the bundle format.
/// Sizes come from the C traits table (`sana_type_traits_of`), never from Swift.
public enum StorageType: Int32, CaseIterable, Sendable, Codable {
    case f32 = 0
    case f16 = 1
    case bf16 = 2
    case int8 = 3
    case int4 = 4

    /// The name used on the command line and in the bundle header ("f32", "f16", "bf16", "int8", "int4").
    public var name: String { String(cString: sana_type_traits_of(rawValue).pointee.name) }

    public init?(name: String) {
        guard let t = StorageType.allCases.first(where: { $0.name == name }) else { return nil }
        self = t
    }

    public var isQuantized: Bool { sana_type_traits_of(rawValue).pointee.is_quantized != 0 }
    public var groupSize: Int { Int(sana_type_traits_of(rawValue).pointee.group_size) }
    /// Rows per packed block: a row range split at multiples of it is itself a valid packed matrix.
    public var rowBlock: Int { Int(sana_type_traits_of(rawValue).pointee.row_block) }

    /// Bytes of a packed [rows, cols] matrix, nil on overflow or non-positive sizes.
    public func matrixBytes(rows: Int, cols: Int) -> Int? {
        let b = sana_matrix_bytes(rawValue, Int64(rows), Int64(cols))
        return b == 0 ? nil : Int(b)
    }
}
