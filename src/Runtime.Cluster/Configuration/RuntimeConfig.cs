using System.Reflection;
using Akka.Configuration;

namespace Runtime.Cluster.Configuration;

/// <summary>Runtime's embedded HOCON documents.</summary>
public static class RuntimeConfig
{
    /// <summary>reference.conf: Runtime's defaults for Akka and the <c>runtime</c> section.</summary>
    public static Config Reference { get; } = Embedded("Runtime.Cluster.reference.conf");

    /// <summary>The run spec's defaults: every known key of a run block, with its default value.</summary>
    public static Config RunDefaults { get; } = Embedded("Runtime.Cluster.run-defaults.conf");

    static Config Embedded(string name)
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream(name)
                           ?? throw new InvalidOperationException($"embedded resource {name} is missing from Runtime.Cluster");
        using var reader = new StreamReader(stream);
        return HoconLoader.Parse(reader.ReadToEnd(), name, environment: _ => null);
    }
}
