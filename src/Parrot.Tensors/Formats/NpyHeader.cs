using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Text;

namespace Parrot.Tensors.Formats;

/// <summary>
/// The header dictionary of a .npy file, e.g. <c>{'descr': '&lt;f4', 'fortran_order': False, 'shape': (2, 3), }</c>.
/// numpy evaluates it as a Python literal; we parse that small grammar ourselves (a dict of exactly the
/// keys 'descr', 'fortran_order' and 'shape' in any order, string literals in either quote, True/False,
/// a tuple of non-negative ints with an optional trailing comma, Python 2 "L" suffixes, any spacing) and
/// refuse everything else with a message naming the file.
/// </summary>
internal sealed class NpyHeader
{
    /// <summary>Most dimensions numpy allows (NPY_MAXDIMS).</summary>
    public const int MaxRank = 64;

    public required string Descr { get; init; }
    public required bool FortranOrder { get; init; }
    public required int[] Shape { get; init; }

    public static NpyHeader Parse(string text, string name) => new Parser(text, name).ParseDict();

    /// <summary>The header numpy writes: keys in its order, a 1-tuple with its trailing comma.</summary>
    public static string Format(string descr, ReadOnlySpan<int> shape)
    {
        var sb = new StringBuilder("{'descr': '").Append(descr).Append("', 'fortran_order': False, 'shape': (");
        for (int i = 0; i < shape.Length; i++)
        {
            if (i > 0) sb.Append(", ");
            sb.Append(shape[i].ToString(CultureInfo.InvariantCulture));
        }
        if (shape.Length == 1) sb.Append(',');
        return sb.Append("), }").ToString();
    }

    private sealed class Parser(string text, string name)
    {
        private int _pos;

        public NpyHeader ParseDict()
        {
            string? descr = null;
            bool? fortran = null;
            int[]? shape = null;
            SkipSpace();
            Expect('{');
            while (true)
            {
                SkipSpace();
                if (Peek() == '}') { _pos++; break; }
                int keyAt = _pos;
                string key = ParseString("a key");
                SkipSpace();
                Expect(':');
                SkipSpace();
                switch (key)
                {
                    case "descr":
                        if (descr is not null) Fail($"key 'descr' appears twice");
                        if (Peek() == '[') Fail("structured (record) dtypes are not supported");
                        descr = ParseString("the 'descr' value");
                        break;
                    case "fortran_order":
                        if (fortran is not null) Fail($"key 'fortran_order' appears twice");
                        fortran = ParseBool();
                        break;
                    case "shape":
                        if (shape is not null) Fail($"key 'shape' appears twice");
                        shape = ParseShape();
                        break;
                    default:
                        _pos = keyAt;
                        Fail($"unexpected key '{Printable(key)}' (a .npy header has exactly 'descr', 'fortran_order' and 'shape')");
                        break;
                }
                SkipSpace();
                char c = Peek();
                if (c == ',') { _pos++; continue; }
                if (c == '}') { _pos++; break; }
                Fail("expected ',' or '}' after a value");
            }
            SkipSpace();
            if (_pos != text.Length) Fail("unexpected text after the closing '}'");
            if (descr is null) Fail("the header has no 'descr' key");
            if (fortran is null) Fail("the header has no 'fortran_order' key");
            if (shape is null) Fail("the header has no 'shape' key");
            return new NpyHeader { Descr = descr, FortranOrder = fortran.Value, Shape = shape };
        }

        private int[] ParseShape()
        {
            if (Peek() != '(') Fail("'shape' must be a tuple such as (2, 3), (5,) or ()");
            _pos++;
            var dims = new List<int>();
            bool trailingComma = false;
            SkipSpace();
            while (Peek() != ')')
            {
                if (dims.Count == MaxRank) Fail($"the shape has more than {MaxRank} dimensions");
                dims.Add(ParseDimension());
                SkipSpace();
                trailingComma = false;
                if (Peek() == ',') { _pos++; trailingComma = true; SkipSpace(); }
                else if (Peek() != ')') Fail("expected ',' or ')' in the shape");
            }
            _pos++;
            // In Python "(3)" is the int 3, not a tuple; numpy refuses it, and so do we.
            if (dims.Count == 1 && !trailingComma) Fail("'shape' (n) without a comma is not a tuple");
            return dims.ToArray();
        }

        private int ParseDimension()
        {
            int start = _pos;
            if (Peek() == '-') Fail("the shape has a negative dimension");
            if (Peek() == '+') _pos++;
            long value = 0;
            int digits = 0;
            while (_pos < text.Length && char.IsAsciiDigit(text[_pos]))
            {
                value = value * 10 + (text[_pos] - '0');
                if (value > int.MaxValue) { _pos = start; Fail($"a dimension of the shape is larger than {int.MaxValue}"); }
                _pos++; digits++;
            }
            if (digits == 0) Fail("expected a dimension (a non-negative integer) in the shape");
            if (digits > 1 && text[start] == '0') { _pos = start; Fail("a dimension has a leading zero, which Python does not allow"); }
            if (Peek() is 'L' or 'l') _pos++;  // Python 2 long literal, as old numpy wrote
            return (int)value;
        }

        private bool ParseBool()
        {
            if (Matches("True")) { _pos += 4; return true; }
            if (Matches("False")) { _pos += 5; return false; }
            Fail("'fortran_order' must be True or False");
            return false;
        }

        private bool Matches(string word) =>
            string.CompareOrdinal(text, _pos, word, 0, word.Length) == 0 &&
            (_pos + word.Length == text.Length || !char.IsAsciiLetterOrDigit(text[_pos + word.Length]) && text[_pos + word.Length] != '_');

        private string ParseString(string what)
        {
            if (Peek() is 'u' or 'U') _pos++;  // Python 2 unicode prefix
            char quote = Peek();
            if (quote is not ('\'' or '"')) Fail($"expected a quoted string for {what}");
            _pos++;
            var sb = new StringBuilder();
            while (true)
            {
                if (_pos >= text.Length) Fail($"unterminated string for {what}");
                char c = text[_pos++];
                if (c == quote) break;
                if (c is '\n' or '\r') Fail($"line break inside the string for {what}");
                if (c == '\\')
                {
                    if (_pos >= text.Length) Fail($"unterminated string for {what}");
                    char e = text[_pos++];
                    if (e is not ('\\' or '\'' or '"')) Fail($"unsupported escape \\{Printable(e.ToString())} in the string for {what}");
                    c = e;
                }
                sb.Append(c);
                if (sb.Length > 64) Fail($"the string for {what} is too long");
            }
            return sb.ToString();
        }

        private void SkipSpace()
        {
            while (_pos < text.Length && text[_pos] is ' ' or '\t' or '\n' or '\r') _pos++;
        }

        private char Peek() => _pos < text.Length ? text[_pos] : '\0';

        private void Expect(char c)
        {
            if (Peek() != c) Fail($"expected '{c}'");
            _pos++;
        }

        [DoesNotReturn]
        private void Fail(string problem) =>
            throw new InvalidDataException($"{name}: invalid .npy header: {problem} at character {_pos} of {Printable(text)}");

        private static string Printable(string s)
        {
            const int max = 200;
            var sb = new StringBuilder();
            foreach (char c in s.Length > max ? s[..max] : s)
                sb.Append(c is >= ' ' and <= '~' ? c : '?');
            if (s.Length > max) sb.Append("...");
            return sb.ToString();
        }
    }
}
