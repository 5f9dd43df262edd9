module argos3plugin/link

go 1.25
