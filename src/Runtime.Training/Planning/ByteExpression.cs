using System.Globalization;
using System.Text;

namespace Runtime.Training.Planning;

/// <summary>One named contribution to an activation formula: coefficient x symbol bytes per token.</summary>
public sealed record ActivationTerm(string Name, long Coefficient, string Symbol, long BytesPerToken);

/// <summary>
/// A sum of coefficient x symbol terms with the symbols' values known, so the planner can both evaluate a formula and
/// print it (e.g. "16h + 8(a/t)d + 8f/t + 4a/t + 8").
/// </summary>
public sealed class ByteExpression(IReadOnlyDictionary<string, long> symbolValues)
{
    readonly List<ActivationTerm> terms = [];

    public IReadOnlyList<ActivationTerm> Terms => terms;

    public ByteExpression Add(string name, long coefficient, string symbol)
    {
        if (coefficient == 0) return this;
        if (!symbolValues.TryGetValue(symbol, out var value))
            throw new InvalidOperationException($"activation formula uses unknown symbol '{symbol}'");
        terms.Add(new ActivationTerm(name, coefficient, symbol, checked(coefficient * value)));
        return this;
    }

    public long BytesPerToken => terms.Sum(t => t.BytesPerToken);

    /// <summary>Terms grouped by symbol, in the order symbols first appear.</summary>
    public override string ToString()
    {
        var order = new List<string>();
        var sums = new Dictionary<string, long>();
        foreach (var t in terms)
        {
            if (!sums.ContainsKey(t.Symbol)) { order.Add(t.Symbol); sums[t.Symbol] = 0; }
            sums[t.Symbol] += t.Coefficient;
        }
        if (order.Count == 0) return "0";
        var sb = new StringBuilder();
        foreach (var s in order)
        {
            if (sb.Length > 0) sb.Append(" + ");
            var c = sums[s].ToString(CultureInfo.InvariantCulture);
            sb.Append(s == "1" ? c : sums[s] == 1 ? s : c + s);
        }
        return sb.ToString();
    }
}
