// Cluster tests start real ActorSystems on loopback TCP and wait on membership; on a 2-core machine running them
// side by side only makes their failure detectors nervous. One class at a time.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
