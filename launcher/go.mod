module github.com/argo-s3-artifact-plugin/launcher

go 1.25
